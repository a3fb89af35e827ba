"""Running a trained reconstruction network on images (NumPy in, NumPy out)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recon.models import ModelSpec
from softjax.mesh import Mesh


class Predictor:
    """Images -> meshes with a trained network, in fixed-size jitted chunks.

    Args:
      spec: the model spec.
      variables: Flax variables (``{'params', 'batch_stats'}``).
      batch_size: images per jitted call (the last chunk is padded, so one compilation).
    """

    def __init__(self, spec: ModelSpec, variables: dict[str, Any], batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.variables = variables
        self.batch_size = int(batch_size)
        net = spec.network()
        self._apply = jax.jit(lambda v, x: net.apply(v, x, train=False))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """RGBA images ``[N, S, S, 4]`` float in [0, 1] -> ``(vertices [N, V, 3] float32,
        face colours [N, F, 3] or None)``."""
        images = np.asarray(images, np.float32)
        s = self.spec.image_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 4):
            raise ValueError(f"images must be RGBA [N, {s}, {s}, 4], got shape {images.shape}")
        verts, cols = [], []
        for start in range(0, images.shape[0], self.batch_size):
            chunk = images[start : start + self.batch_size]
            n = chunk.shape[0]
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n,) + chunk.shape[1:], np.float32)
                chunk = np.concatenate([chunk, pad])
            v, c = self._apply(self.variables, jnp.asarray(chunk))
            verts.append(np.asarray(v)[:n])
            if c is not None:
                cols.append(np.asarray(c)[:n])
        nv = self.spec.template_vertices.shape[0]
        vertices = np.concatenate(verts) if verts else np.zeros((0, nv, 3), np.float32)
        return vertices, (np.concatenate(cols) if cols else None)

    def mesh(self, vertices: np.ndarray, colors: np.ndarray | None = None) -> Mesh:
        """One reconstructed mesh (``vertices [V, 3]``, optional face colours ``[F, 3]``)."""
        textures = None if colors is None else colors[None, :, None, :]
        return Mesh.create(vertices[None], self.spec.template_faces[None], textures=textures)

    def face_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """``[N, V, 3]`` -> ``[N, F, 3, 3]`` corners of the template's faces."""
        return vertices[:, self.spec.template_faces]
