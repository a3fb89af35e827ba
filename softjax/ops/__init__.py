"""Rasterization ops: :func:`soft_rasterize` and its building blocks."""

from softjax.ops.binning import TilingConfig
from softjax.ops.dispatch import BackendFallbackWarning, backend_report
from softjax.ops.pallas_kernels import PallasConfig
from softjax.ops.rasterize import soft_rasterize

__all__ = [
    "BackendFallbackWarning",
    "PallasConfig",
    "TilingConfig",
    "backend_report",
    "soft_rasterize",
]
