"""Lighting: ambient plus directional lights, applied to a mesh's colours (SoftRas section 5).

Light = ambient_intensity * ambient_color + sum_l intensity_l * color_l * max(0, n . dir_l),
evaluated per face (``texture_type='surface'``, face normals) or per vertex (``'vertex'``,
vertex normals), in world space, before the camera. Directions are used as given (SoftRas does
not normalise them).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax.mesh import Mesh


class Lights(NamedTuple):
    """Light parameters (a pytree, so ``jax.grad`` reaches every field).

    Shapes (a leading batch axis ``B`` is optional on every field):
      ambient_intensity: ``[]``; ambient_color: ``[3]``;
      intensities: ``[L]``; colors: ``[L, 3]``; directions: ``[L, 3]`` for L directional lights
      (L may be 0).
    """

    ambient_intensity: jax.Array
    ambient_color: jax.Array
    intensities: jax.Array
    colors: jax.Array
    directions: jax.Array

    @classmethod
    def create(
        cls,
        ambient_intensity=0.5,
        ambient_color=(1.0, 1.0, 1.0),
        intensities=(0.5,),
        colors=((1.0, 1.0, 1.0),),
        directions=((0.0, 1.0, 0.0),),
    ) -> Lights:
        """Lights with SoftRas's defaults: ambient 0.5 white, one 0.5 white light along +y.

        A single directional light may be given unnested (``intensities=0.7``,
        ``colors=(1, 1, 1)``, ``directions=(0, 0, 1)``).
        """
        ai = jnp.asarray(ambient_intensity, jnp.float32)
        ac = jnp.asarray(ambient_color, jnp.float32)
        it = jnp.asarray(intensities, jnp.float32)
        co = jnp.asarray(colors, jnp.float32)
        di = jnp.asarray(directions, jnp.float32)
        if it.ndim == 0:
            it = it[None]
        if co.ndim == 1:
            co = co[None]
        if di.ndim == 1:
            di = di[None]
        n = max(it.shape[-1], co.shape[-2], di.shape[-2])
        it = jnp.broadcast_to(it, it.shape[:-1] + (n,))
        co = jnp.broadcast_to(co, co.shape[:-2] + (n, 3))
        di = jnp.broadcast_to(di, di.shape[:-2] + (n, 3))
        if ac.shape[-1:] != (3,) or co.shape[-1:] != (3,) or di.shape[-1:] != (3,):
            raise ValueError(
                "ambient_color must be [3], colors and directions [L, 3] (RGB / xyz), got "
                f"{ac.shape}, {co.shape}, {di.shape}"
            )
        return cls(ai, ac, it, co, di)


def light_intensity(normals: jax.Array, lights: Lights) -> jax.Array:
    """RGB light arriving at surfaces with unit ``normals`` ``[B, N, 3]`` -> ``[B, N, 3]``."""
    b = normals.shape[0]

    def batched(x, rank):  # add the batch axis when the field has none
        x = jnp.asarray(x, normals.dtype)
        return x if x.ndim == rank + 1 else jnp.broadcast_to(x, (b,) + x.shape)

    ai = batched(lights.ambient_intensity, 0)
    ac = batched(lights.ambient_color, 1)
    it = batched(lights.intensities, 1)
    co = batched(lights.colors, 2)
    di = batched(lights.directions, 2)
    light = (ai[:, None] * ac)[:, None, :]  # [B, 1, 3]
    # HIGHEST: not TF32 on GPUs, whose rounding (about 5e-4) would show in the shading
    exact = jax.lax.Precision.HIGHEST
    cos = jax.nn.relu(jnp.einsum("bnk,blk->bnl", normals, di, precision=exact))  # [B, N, L]
    light = light + jnp.einsum("bnl,bl,blc->bnc", cos, it, co, precision=exact)
    return jnp.broadcast_to(light, normals.shape)


def shade(mesh: Mesh, lights: Lights | None = None) -> Mesh:
    """Multiplies the mesh's colours by the light they receive.

    ``texture_type='surface'``: every texel of a face by the light at its face normal;
    ``'vertex'``: every vertex colour by the light at its vertex normal.

    Args:
      mesh: :class:`softjax.Mesh`.
      lights: :class:`Lights`; None = SoftRas's defaults.

    Returns:
      The mesh with lit textures (same shapes).

    Raises:
      ValueError: for ``texture_type='uv'`` (see :func:`softjax.render`, which lights it).
    """
    if mesh.texture_type == "uv":
        raise ValueError(
            "shade() cannot light a uv-textured mesh (its image is shared by many faces): "
            "render() lights it per face, or pass face_tint=light_intensity(mesh.surface_normals,"
            " lights) to soft_rasterize"
        )
    lights = Lights.create() if lights is None else lights
    if mesh.texture_type == "surface":
        light = light_intensity(mesh.surface_normals, lights)  # [B, F, 3]
        return mesh.replace(textures=mesh.textures * light[:, :, None, :])
    light = light_intensity(mesh.vertex_normals, lights)  # [B, V, 3]
    return mesh.replace(textures=mesh.textures * light)
