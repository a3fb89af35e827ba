"""The SoftRas demos' camera and renderer settings, shared by the ``render`` and ``deform``
tools."""

from __future__ import annotations

from typing import Any

from softjax.render import RenderConfig

__all__ = ["DISTANCE", "ELEVATION", "VIEWING_ANGLE", "demo_config"]

DISTANCE = 2.732  # camera distance from the origin
ELEVATION = 30.0  # degrees
VIEWING_ANGLE = 15  # degrees, of the look_at perspective camera


def demo_config(image_size: int, **changes: Any) -> RenderConfig:
    """The demos' renderer: look_at camera with :data:`VIEWING_ANGLE`, sigma 1e-4, hard rgb
    aggregation.

    Args:
      image_size: output images are ``image_size x image_size``.
      **changes: further :class:`~softjax.render.RenderConfig` fields (e.g. ``lighting``).
    """
    return RenderConfig(
        image_size=image_size,
        camera_mode="look_at",
        viewing_angle=VIEWING_ANGLE,
        sigma_val=1e-4,
        aggr_func_rgb="hard",
        **changes,
    )
