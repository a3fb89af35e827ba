"""Running a trained reconstruction network on images (NumPy in, NumPy out)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recon.models import ModelSpec, meshes
from softjax.batching import map_padded
from softjax.mesh import Mesh, gather_faces


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
        face colours [N, F, 3] float32 or None)``."""
        images = np.asarray(images, np.float32)
        s = self.spec.image_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 4):
            raise ValueError(f"images must be RGBA [N, {s}, {s}, 4], got shape {images.shape}")
        outputs = map_padded(
            lambda x: self._apply(self.variables, jnp.asarray(x)), [images], self.batch_size
        )
        cols = [c for _, c in outputs if c is not None]
        nv = self.spec.template_vertices.shape[0]
        if not outputs:
            return np.zeros((0, nv, 3), np.float32), None
        return np.concatenate([v for v, _ in outputs]), (np.concatenate(cols) if cols else None)

    def mesh(self, vertices: np.ndarray, colors: np.ndarray | None = None) -> Mesh:
        """One reconstructed mesh (``vertices [V, 3]``, optional face colours ``[F, 3]``)."""
        return meshes(self.spec, vertices[None], None if colors is None else colors[None])

    def face_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """``[N, V, 3]`` -> ``[N, F, 3, 3]`` (float32) corners of the template's faces."""
        faces = self.spec.template_faces
        faces = np.broadcast_to(faces, (vertices.shape[0],) + faces.shape)
        return np.asarray(gather_faces(jnp.asarray(vertices), jnp.asarray(faces)))
