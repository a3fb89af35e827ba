"""softjax: a differentiable soft mesh rasterizer (SoftRas semantics) in JAX."""

from softjax.ops import TilingConfig, soft_rasterize

__version__ = "0.1.0"
__all__ = ["TilingConfig", "soft_rasterize"]
