"""softjax: a differentiable soft mesh rasterizer (SoftRas semantics) in JAX."""

from softjax import losses, transform
from softjax.io import ObjError, load_obj, save_obj
from softjax.lighting import Lights, light_intensity, shade
from softjax.mesh import Mesh, deform_vertices, icosphere, pad_meshes, unpad_meshes
from softjax.ops import (
    BackendFallbackWarning,
    PallasConfig,
    TilingConfig,
    backend_report,
    soft_rasterize,
)
from softjax.render import RenderConfig, project, render
from softjax.transform import (
    get_points_from_angles,
    look,
    look_at,
    orthogonal,
    perspective,
    projection,
)
from softjax.voxel import voxel_iou, voxelize

__version__ = "0.1.0"
__all__ = [
    "BackendFallbackWarning",
    "Lights",
    "ObjError",
    "load_obj",
    "losses",
    "save_obj",
    "voxel_iou",
    "voxelize",
    "Mesh",
    "backend_report",
    "deform_vertices",
    "PallasConfig",
    "RenderConfig",
    "TilingConfig",
    "get_points_from_angles",
    "icosphere",
    "light_intensity",
    "look",
    "look_at",
    "orthogonal",
    "pad_meshes",
    "perspective",
    "project",
    "projection",
    "render",
    "shade",
    "soft_rasterize",
    "transform",
    "unpad_meshes",
]
