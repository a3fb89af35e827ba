"""``render``: lighting, camera and soft rasterization composed, like SoftRas's SoftRenderer.

Options live in a hashable :class:`RenderConfig` (static under ``jit``); meshes, eyes, camera
matrices and lights are arguments, so ``jax.vmap`` over eyes renders one mesh from many
viewpoints without copying it, and ``jax.grad`` reaches vertices, textures, eye and lights.
"""

from __future__ import annotations

import dataclasses

import jax

from softjax import transform
from softjax.lighting import Lights, light_intensity, shade
from softjax.mesh import Mesh, gather_faces
from softjax.ops import TilingConfig, soft_rasterize

CAMERA_MODES = ("look_at", "look", "projection")


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Every option of SoftRas's ``SoftRenderer`` (defaults are the original's).

    Rasterizer: image_size, background_color, near, far, anti_aliasing (render at 2x and
    average 2x2 blocks), fill_back, eps, sigma_val, dist_func, dist_eps, gamma_val,
    aggr_func_rgb, aggr_func_alpha (see :func:`softjax.soft_rasterize`).
    Camera: camera_mode ``'look_at'`` | ``'look'`` | ``'projection'``; perspective (else
    orthogonal); viewing_angle (degrees, half field of view); viewing_scale (orthogonal);
    orig_size (projection). Lighting: ``lighting=False`` renders the raw colours.
    Backend: backend, tiling (see :func:`softjax.soft_rasterize`). The texture type is the
    mesh's.
    """

    image_size: int = 256
    background_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    near: float = 1.0
    far: float = 100.0
    anti_aliasing: bool = False
    fill_back: bool = True
    eps: float = 1e-3
    sigma_val: float = 1e-5
    dist_func: str = "euclidean"
    dist_eps: float = 1e-4
    gamma_val: float = 1e-4
    aggr_func_rgb: str = "softmax"
    aggr_func_alpha: str = "prod"
    camera_mode: str = "projection"
    perspective: bool = True
    viewing_angle: float = 30.0
    viewing_scale: float = 1.0
    orig_size: int = 512
    lighting: bool = True
    backend: str | None = None  # soft_rasterize's: None = $SOFTJAX_BACKEND, else 'auto'
    tiling: TilingConfig | None = None  # soft_rasterize's: None = the backend's defaults

    def __post_init__(self):
        if self.camera_mode not in CAMERA_MODES:
            raise ValueError(
                f"camera_mode must be one of {list(CAMERA_MODES)}, got {self.camera_mode!r}"
            )
        object.__setattr__(self, "background_color", tuple(float(c) for c in self.background_color))

    def replace(self, **changes) -> RenderConfig:
        return dataclasses.replace(self, **changes)


def project(
    vertices, config: RenderConfig, *, eye=None, camera_direction=None, P=None, dist_coeffs=None
) -> jax.Array:
    """World vertices ``[B, V, 3]`` -> screen space ``[B, V, 3]`` with ``config``'s camera.

    eye: ``[3]`` or ``[B, 3]`` (look / look_at; default ``transform.default_eye``);
    camera_direction: ``[3]`` or ``[B, 3]`` (look; default (0, 0, 1)); P ``[B, 3, 4]`` and
    dist_coeffs ``[B, 5]`` (projection; required P).
    """
    if config.camera_mode in ("look_at", "look"):
        if eye is None:
            eye = transform.default_eye(config.viewing_angle)
        if config.camera_mode == "look_at":
            v = transform.look_at(vertices, eye)
        else:
            direction = (0.0, 0.0, 1.0) if camera_direction is None else camera_direction
            v = transform.look(vertices, eye, direction)
        if config.perspective:
            return transform.perspective(v, angle=config.viewing_angle)
        return transform.orthogonal(v, scale=config.viewing_scale)
    if P is None:
        raise ValueError("camera_mode='projection' needs a camera matrix P of shape [B, 3, 4]")
    return transform.projection(vertices, P, dist_coeffs, orig_size=config.orig_size)


def render(
    mesh: Mesh,
    config: RenderConfig | None = None,
    *,
    eye=None,
    camera_direction=None,
    P=None,
    dist_coeffs=None,
    lights: Lights | None = None,
    sigma_val=None,
    gamma_val=None,
) -> jax.Array:
    """Renders a batch of meshes: shade -> camera -> soft_rasterize.

    Args:
      mesh: :class:`softjax.Mesh` with B meshes (padded batches of different meshes, from
        :func:`softjax.pad_meshes`, render each mesh as it renders alone).
      config: :class:`RenderConfig` (static options); None = SoftRas's defaults.
      eye, camera_direction, P, dist_coeffs: camera parameters (see :func:`project`).
      lights: :class:`softjax.Lights`; None = SoftRas's default lights.
      sigma_val, gamma_val: override the config's values with (possibly traced) scalars,
        e.g. for annealing schedules without recompiling.

    Returns:
      ``[B, S, S, 4]`` RGBA images (float32), row 0 at the top.
    """
    config = RenderConfig() if config is None else config
    tint = None
    if config.lighting and mesh.texture_type == "uv":
        # an image shared by many faces cannot hold per-face light: the rasterizer multiplies
        # each face's sampled colour by it instead (the same flat lighting as 'surface')
        lights = Lights.create() if lights is None else lights
        tint = light_intensity(mesh.surface_normals, lights)
    elif config.lighting:
        mesh = shade(mesh, lights)
    screen = project(
        mesh.vertices,
        config,
        eye=eye,
        camera_direction=camera_direction,
        P=P,
        dist_coeffs=dist_coeffs,
    )
    face_vertices = gather_faces(screen, mesh.faces)
    size = config.image_size * (2 if config.anti_aliasing else 1)
    images = soft_rasterize(
        face_vertices,
        mesh.face_textures,
        image_size=size,
        background_color=config.background_color,
        near=config.near,
        far=config.far,
        fill_back=config.fill_back,
        eps=config.eps,
        sigma_val=config.sigma_val if sigma_val is None else sigma_val,
        dist_func=config.dist_func,
        dist_eps=config.dist_eps,
        gamma_val=config.gamma_val if gamma_val is None else gamma_val,
        aggr_func_rgb=config.aggr_func_rgb,
        aggr_func_alpha=config.aggr_func_alpha,
        texture_type=mesh.texture_type,
        face_uvs=mesh.face_uvs,
        face_tint=tint,
        face_counts=mesh.face_counts,
        backend=config.backend,
        tiling=config.tiling,
    )
    if config.anti_aliasing:
        b, s2 = images.shape[0], config.image_size
        images = images.reshape(b, s2, 2, s2, 2, 4).mean(axis=(2, 4))
    return images
