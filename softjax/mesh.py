"""Triangle meshes as immutable pytrees, and the icosphere template."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from softjax.concrete import concrete_value
from softjax.ops.pixel_face import TEXTURE_TYPES
from softjax.transform import normalize

_NORMAL_EPS = 1e-6  # floor of a normal's length (the cameras' is 1e-5, as in SoftRas)


def gather_faces(values: jax.Array, faces: jax.Array) -> jax.Array:
    """Per-vertex values ``[B, V, C]`` gathered at face corners: ``[B, F, 3, C]``."""
    return jax.vmap(lambda v, f: v[f])(values, faces)


def face_normals(face_vertices: jax.Array) -> jax.Array:
    """Unit face normals ``normalize((v2 - v1) x (v0 - v1))`` of ``[..., 3, 3]`` -> ``[..., 3]``."""
    v0, v1, v2 = face_vertices[..., 0, :], face_vertices[..., 1, :], face_vertices[..., 2, :]
    return normalize(jnp.cross(v2 - v1, v0 - v1), _NORMAL_EPS)


def vertex_normals(vertices: jax.Array, faces: jax.Array) -> jax.Array:
    """Unit vertex normals ``[B, V, 3]``: the normalised sum, over the faces around a vertex, of
    the cross product of the face's two edges at that corner (area-weighted face normals)."""
    fv = gather_faces(vertices, faces)  # [B, F, 3, 3]
    nxt = jnp.roll(fv, -1, axis=-2)
    prv = jnp.roll(fv, 1, axis=-2)
    corner = jnp.cross(nxt - fv, prv - fv)  # [B, F, 3, 3]
    summed = jax.vmap(
        lambda c, f: (
            jnp.zeros((vertices.shape[1], 3), c.dtype).at[f.reshape(-1)].add(c.reshape(-1, 3))
        )
    )(corner, faces)
    return normalize(summed, _NORMAL_EPS)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["vertices", "faces", "textures"],
    meta_fields=["texture_type"],
)
@dataclasses.dataclass(frozen=True)
class Mesh:
    """A batch of triangle meshes (an immutable pytree; ``texture_type`` is static).

    Attributes:
      vertices: ``[B, V, 3]`` float, world coordinates.
      faces: ``[B, F, 3]`` int32 vertex indices.
      textures: ``[B, F, R*R, 3]`` per-face texels (``texture_type='surface'``) or ``[B, V, 3]``
        per-vertex colours (``'vertex'``), values in [0, 1].
      texture_type: ``'surface'`` or ``'vertex'``.
    """

    vertices: jax.Array
    faces: jax.Array
    textures: jax.Array
    texture_type: str = "surface"

    def __post_init__(self):
        if self.texture_type not in TEXTURE_TYPES:
            raise ValueError(
                f"texture_type must be one of {list(TEXTURE_TYPES)}, got {self.texture_type!r}"
            )

    @classmethod
    def create(
        cls,
        vertices,
        faces,
        textures=None,
        texture_type: str = "surface",
        texture_res: int = 1,
    ) -> Mesh:
        """Builds a checked mesh; unbatched ``[V, 3]`` / ``[F, 3]`` inputs get a batch axis.

        Without ``textures`` every face (or vertex) is white.
        """
        v = jnp.asarray(vertices)
        f = jnp.asarray(faces)
        if v.ndim == 2:
            v = v[None]
        if f.ndim == 2:
            f = f[None]
        if v.ndim != 3 or v.shape[-1] != 3:
            raise ValueError(f"vertices must have shape [B, V, 3] or [V, 3], got {v.shape}")
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise ValueError(f"vertices must be floating point, got dtype {v.dtype}")
        if f.ndim != 3 or f.shape[-1] != 3:
            raise ValueError(f"faces must have shape [B, F, 3] or [F, 3], got {f.shape}")
        if not jnp.issubdtype(f.dtype, jnp.integer):
            raise ValueError(f"faces must be integer vertex indices, got dtype {f.dtype}")
        if f.shape[0] != v.shape[0]:
            if f.shape[0] == 1:
                f = jnp.broadcast_to(f, (v.shape[0],) + f.shape[1:])
            else:
                raise ValueError(
                    f"vertices and faces have different batch sizes: {v.shape[0]} vs {f.shape[0]}"
                )
        fn = concrete_value(f)
        if fn is not None:
            if fn.size and (fn.min() < 0 or fn.max() >= v.shape[1]):
                raise ValueError(
                    f"faces index vertices 0..{v.shape[1] - 1}, got indices in "
                    f"[{fn.min()}, {fn.max()}]"
                )
        f = f.astype(jnp.int32)
        b = v.shape[0]
        if textures is None:
            shape = (
                (b, f.shape[1], texture_res**2, 3)
                if texture_type == "surface"
                else (b, v.shape[1], 3)
            )
            textures = jnp.ones(shape, v.dtype)
        t = jnp.asarray(textures, v.dtype)
        if texture_type == "surface":
            if t.ndim == 3:
                t = t[None]
            r = int(round(t.shape[2] ** 0.5)) if t.ndim == 4 else 0
            if t.ndim != 4 or t.shape[1] != f.shape[1] or t.shape[3] != 3 or r * r != t.shape[2]:
                raise ValueError(
                    f"surface textures must have shape [B, F, R*R, 3] with F={f.shape[1]}, "
                    f"got {t.shape}"
                )
        elif texture_type == "vertex":
            if t.ndim == 2:
                t = t[None]
            if t.ndim != 3 or t.shape[1:] != (v.shape[1], 3):
                raise ValueError(
                    f"vertex textures must have shape [B, V, 3] with V={v.shape[1]}, got {t.shape}"
                )
        else:
            raise ValueError(
                f"texture_type must be one of {list(TEXTURE_TYPES)}, got {texture_type!r}"
            )
        if t.shape[0] != b:
            t = jnp.broadcast_to(t, (b,) + t.shape[1:])
        return cls(v, f, t, texture_type)

    @property
    def batch_size(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[1]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[1]

    @property
    def face_vertices(self) -> jax.Array:
        """``[B, F, 3, 3]`` corner positions of every face."""
        return gather_faces(self.vertices, self.faces)

    @property
    def surface_normals(self) -> jax.Array:
        """``[B, F, 3]`` unit face normals (counter-clockwise faces point outwards)."""
        return face_normals(self.face_vertices)

    @property
    def vertex_normals(self) -> jax.Array:
        """``[B, V, 3]`` unit vertex normals."""
        return vertex_normals(self.vertices, self.faces)

    @property
    def face_textures(self) -> jax.Array:
        """Textures in the layout ``soft_rasterize`` takes: ``[B, F, R*R, 3]`` for surface
        textures, ``[B, F, 3, 3]`` (colour per corner) for vertex colours."""
        if self.texture_type == "surface":
            return self.textures
        return gather_faces(self.textures, self.faces)

    def replace(self, **changes) -> Mesh:
        return dataclasses.replace(self, **changes)


_PHI = (1.0 + 5.0**0.5) / 2.0
# the regular icosahedron (unnormalised corners), faces counter-clockwise seen from outside
ICOSAHEDRON_VERTICES = np.array(
    [
        [-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0],
        [0, -1, _PHI], [0, 1, _PHI], [0, -1, -_PHI], [0, 1, -_PHI],
        [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1],
    ],
    np.float64,
)  # fmt: skip
ICOSAHEDRON_FACES = np.array(
    [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ]
)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _icosphere_np(level: int) -> tuple[np.ndarray, np.ndarray]:
    verts = [v / np.linalg.norm(v) for v in ICOSAHEDRON_VERTICES]
    faces = ICOSAHEDRON_FACES.tolist()
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(i: int, j: int, cache=cache) -> int:
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    return np.asarray(verts, np.float32), np.asarray(faces, np.int32)


def icosphere_arrays(level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere as NumPy arrays: vertices ``[10 * 4**L + 2, 3]`` float32, faces
    ``[20 * 4**L, 3]`` int32 (read-only; see :func:`icosphere`)."""
    if not isinstance(level, int) or level < 0 or level > 7:
        raise ValueError(f"level must be an int in [0, 7], got {level!r}")
    v, f = _icosphere_np(level)
    v.flags.writeable = False
    f.flags.writeable = False
    return v, f


def icosphere(level: int = 3, *, batch_size: int = 1, texture_res: int = 1) -> Mesh:
    """Unit icosphere: level L has ``10 * 4**L + 2`` vertices and ``20 * 4**L`` faces (level 3:
    642 vertices, 1280 faces, the SoftRas reconstruction template). Faces are counter-clockwise
    seen from outside; textures are white."""
    v, f = icosphere_arrays(level)
    v = np.broadcast_to(v, (batch_size,) + v.shape)
    f = np.broadcast_to(f, (batch_size,) + f.shape)
    return Mesh.create(v, f, texture_res=texture_res)


def deform_vertices(base: jax.Array, offsets: jax.Array, centroid: jax.Array) -> jax.Array:
    """SoftRas's template deformation (``demo_deform`` and the reconstruction decoder).

    ``v = sign(b) sigmoid(logit(|b|) + offsets)`` keeps every coordinate inside (-1, 1); then
    with ``c = tanh(centroid)`` positive coordinates are scaled by ``1 - c``, negative ones by
    ``1 + c``, and ``c`` is added, which moves the shape's centre while keeping it in the cube.

    Args:
      base: ``[..., V, 3]`` template vertices with every ``|coordinate|`` in (0, 1) (SoftRas: the
        unit sphere scaled by 0.5).
      offsets: ``[..., V, 3]`` per-vertex offsets in logit space (zeros leave ``base`` as is).
      centroid: ``[..., 3]`` centre parameter (pre-tanh).

    Returns:
      ``[..., V, 3]`` deformed vertices, broadcast over the leading axes.
    """
    a = jnp.abs(base)
    logit = jnp.log(a) - jnp.log1p(-a)
    c = jnp.tanh(centroid)[..., None, :]
    v = jax.nn.sigmoid(logit + offsets) * jnp.sign(base)
    v = jax.nn.relu(v) * (1 - c) - jax.nn.relu(-v) * (1 + c)
    return v + c
