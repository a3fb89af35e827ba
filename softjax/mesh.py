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


def vertex_normals(
    vertices: jax.Array, faces: jax.Array, face_counts: jax.Array | None = None
) -> jax.Array:
    """Unit vertex normals ``[B, V, 3]``: the normalised sum, over the faces around a vertex, of
    the cross product of the face's two edges at that corner (area-weighted face normals).
    With ``face_counts`` (``[B]`` int), faces ``f >= face_counts[b]`` are padding and ignored."""
    fv = gather_faces(vertices, faces)  # [B, F, 3, 3]
    nxt = jnp.roll(fv, -1, axis=-2)
    prv = jnp.roll(fv, 1, axis=-2)
    corner = jnp.cross(nxt - fv, prv - fv)  # [B, F, 3, 3]
    if face_counts is not None:
        real = jnp.arange(faces.shape[1]) < jnp.asarray(face_counts)[:, None]
        corner = jnp.where(real[:, :, None, None], corner, 0.0)
    summed = jax.vmap(
        lambda c, f: (
            jnp.zeros((vertices.shape[1], 3), c.dtype).at[f.reshape(-1)].add(c.reshape(-1, 3))
        )
    )(corner, faces)
    return normalize(summed, _NORMAL_EPS)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["vertices", "faces", "textures", "face_uvs", "vertex_counts", "face_counts"],
    meta_fields=["texture_type"],
)
@dataclasses.dataclass(frozen=True)
class Mesh:
    """A batch of triangle meshes (an immutable pytree; ``texture_type`` is static).

    Attributes:
      vertices: ``[B, V, 3]`` float, world coordinates.
      faces: ``[B, F, 3]`` int32 vertex indices.
      textures: ``[B, F, R*R, 3]`` per-face texels (``texture_type='surface'``), ``[B, V, 3]``
        per-vertex colours (``'vertex'``) or ``[B, H, W, 3]`` one texture image per mesh
        (``'uv'``; row 0 is the top of the image, ``v = 1``), values in [0, 1].
      texture_type: ``'surface'``, ``'vertex'`` or ``'uv'``.
      face_uvs: ``'uv'`` only: ``[B, F, 3, 2]`` float (u, v) of each face corner; else None.
      vertex_counts, face_counts: ``None`` for a batch of meshes of one size; for a padded
        batch of different meshes (:func:`pad_meshes`), ``[B]`` int32: mesh ``b`` is
        ``vertices[b, :vertex_counts[b]]`` and ``faces[b, :face_counts[b]]``; the rest is
        padding, which ``render`` skips.
    """

    vertices: jax.Array
    faces: jax.Array
    textures: jax.Array
    texture_type: str = "surface"
    face_uvs: jax.Array | None = None
    vertex_counts: jax.Array | None = None
    face_counts: jax.Array | None = None

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
        face_uvs=None,
    ) -> Mesh:
        """Builds a checked mesh; unbatched ``[V, 3]`` / ``[F, 3]`` (``[H, W, 3]``,
        ``[F, 3, 2]``) inputs get a batch axis.

        Without ``textures`` every face (or vertex, or the ``'uv'`` image: 1 x 1) is white.
        ``face_uvs`` (``[B, F, 3, 2]``) is required for, and only accepted with,
        ``texture_type='uv'``.
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
            shape = {
                "surface": (b, f.shape[1], texture_res**2, 3),
                "vertex": (b, v.shape[1], 3),
                "uv": (b, 1, 1, 3),
            }.get(texture_type, (b, v.shape[1], 3))
            textures = jnp.ones(shape, v.dtype)
        uvs = None
        if texture_type == "uv":
            uvs = _check_face_uvs(face_uvs, b, f.shape[1], v.dtype)
        elif face_uvs is not None:
            raise ValueError(f"face_uvs belong to texture_type='uv', got {texture_type!r}")
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
        elif texture_type == "uv":
            if t.ndim == 3:
                t = t[None]
            if t.ndim != 4 or t.shape[3] != 3 or min(t.shape[1:3]) < 1:
                raise ValueError(
                    "uv textures must be RGB images of shape [B, H, W, 3] or [H, W, 3], "
                    f"got {t.shape}"
                )
        else:
            raise ValueError(
                f"texture_type must be one of {list(TEXTURE_TYPES)}, got {texture_type!r}"
            )
        if t.shape[0] != b:
            t = jnp.broadcast_to(t, (b,) + t.shape[1:])
        return cls(v, f, t, texture_type, uvs)

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
        """``[B, V, 3]`` unit vertex normals (padding faces take no part)."""
        return vertex_normals(self.vertices, self.faces, self.face_counts)

    @property
    def face_textures(self) -> jax.Array:
        """Textures in the layout ``soft_rasterize`` takes: ``[B, F, R*R, 3]`` for surface
        textures, ``[B, F, 3, 3]`` (colour per corner) for vertex colours, the ``[B, H, W, 3]``
        image for ``'uv'`` (with :attr:`face_uvs`)."""
        if self.texture_type == "vertex":
            return gather_faces(self.textures, self.faces)
        return self.textures

    def replace(self, **changes) -> Mesh:
        return dataclasses.replace(self, **changes)


def _check_face_uvs(face_uvs, batch: int, faces: int, dtype) -> jax.Array:
    if face_uvs is None:
        raise ValueError("texture_type='uv' needs face_uvs, the [B, F, 3, 2] corner UVs")
    uv = jnp.asarray(face_uvs)
    if uv.ndim == 3:
        uv = uv[None]
    if uv.ndim != 4 or uv.shape[1:] != (faces, 3, 2) or uv.shape[0] not in (1, batch):
        raise ValueError(
            f"face_uvs must have shape [B, F, 3, 2] or [F, 3, 2] with F={faces}, got {uv.shape}"
        )
    if not jnp.issubdtype(uv.dtype, jnp.floating):
        raise ValueError(f"face_uvs must be floating point, got dtype {uv.dtype}")
    return jnp.broadcast_to(uv.astype(dtype), (batch, faces, 3, 2))


def _mesh_counts(mesh: Mesh) -> list[tuple[int, int]]:
    """(vertices, faces) of every mesh of a batch (its counts when it is padded)."""
    if mesh.face_counts is None:
        return [(mesh.num_vertices, mesh.num_faces)] * mesh.batch_size
    vc = concrete_value(mesh.vertex_counts)
    fc = concrete_value(mesh.face_counts)
    if vc is None or fc is None:
        raise ValueError("pad_meshes needs concrete vertex_counts and face_counts, not traced")
    return list(zip(vc.tolist(), fc.tolist(), strict=True))


def _pad_to(x: jax.Array, n: int, axis: int = 1) -> jax.Array:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, n - x.shape[axis])
    return jnp.pad(x, widths)


def pad_meshes(meshes) -> Mesh:
    """Stacks meshes of different sizes into one padded batch (like PyTorch3D's padded
    ``Meshes``).

    Every mesh of every input (each a :class:`Mesh` of any batch size, itself possibly padded)
    becomes one entry of the batch, padded with zero vertices, faces ``(0, 0, 0)`` and zero
    textures up to the largest vertex and face counts. ``render`` and ``soft_rasterize`` skip
    the padding faces at binning (they cost nothing and add nothing to colour, alpha or
    gradients); ``softjax.losses.laplacian_loss`` / ``flatten_loss`` and ``softjax.voxelize``
    take the counts too.

    Args:
      meshes: a non-empty sequence of :class:`Mesh` with one ``texture_type``, one dtype, and
        for ``'surface'`` one texels-per-face ``R*R``, for ``'uv'`` one image size.

    Returns:
      :class:`Mesh` with ``vertex_counts`` and ``face_counts`` ``[B]`` int32.

    Raises:
      ValueError: an empty sequence, a non-Mesh, or meshes that cannot share a batch (naming
        the mismatch).
    """
    meshes = list(meshes)
    if not meshes:
        raise ValueError("pad_meshes needs at least one mesh")
    for i, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise ValueError(f"pad_meshes takes softjax.Mesh objects, item {i} is {type(m)}")
    first = meshes[0]
    for i, m in enumerate(meshes[1:], 1):
        if m.texture_type != first.texture_type:
            raise ValueError(
                f"meshes of one batch share a texture_type: item 0 is {first.texture_type!r}, "
                f"item {i} is {m.texture_type!r}"
            )
        if m.vertices.dtype != first.vertices.dtype:
            raise ValueError(
                f"meshes of one batch share a dtype: item 0 is {first.vertices.dtype}, "
                f"item {i} is {m.vertices.dtype}"
            )
        if first.texture_type == "surface" and m.textures.shape[2] != first.textures.shape[2]:
            raise ValueError(
                "surface textures of one batch need the same texels per face, got "
                f"{first.textures.shape[2]} (item 0) and {m.textures.shape[2]} (item {i})"
            )
        if first.texture_type == "uv" and m.textures.shape[1:3] != first.textures.shape[1:3]:
            raise ValueError(
                "uv textures of one batch need the same image size, got "
                f"{first.textures.shape[1:3]} (item 0) and {m.textures.shape[1:3]} (item {i}): "
                "resize the images first"
            )
    counts = [c for m in meshes for c in _mesh_counts(m)]
    v_max = max(m.num_vertices for m in meshes)
    f_max = max(m.num_faces for m in meshes)
    vertex_axis = first.texture_type == "vertex"

    def stacked(field: str, width: int | None) -> jax.Array:
        parts = [getattr(m, field) for m in meshes]
        return jnp.concatenate([p if width is None else _pad_to(p, width) for p in parts])

    uvs = stacked("face_uvs", f_max) if first.texture_type == "uv" else None
    return Mesh(
        vertices=stacked("vertices", v_max),
        faces=stacked("faces", f_max),
        textures=stacked(
            "textures", v_max if vertex_axis else (None if first.texture_type == "uv" else f_max)
        ),
        texture_type=first.texture_type,
        face_uvs=uvs,
        vertex_counts=jnp.asarray([c[0] for c in counts], jnp.int32),
        face_counts=jnp.asarray([c[1] for c in counts], jnp.int32),
    )


def unpad_meshes(mesh: Mesh) -> list[Mesh]:
    """The meshes of a batch, each alone (batch size 1, padding removed); the inverse of
    :func:`pad_meshes`. Needs concrete counts."""
    out = []
    for b, (nv, nf) in enumerate(_mesh_counts(mesh)):
        tex = mesh.textures[b : b + 1]
        if mesh.texture_type == "surface":
            tex = tex[:, :nf]
        elif mesh.texture_type == "vertex":
            tex = tex[:, :nv]
        uvs = None if mesh.face_uvs is None else mesh.face_uvs[b : b + 1, :nf]
        out.append(
            Mesh(
                mesh.vertices[b : b + 1, :nv],
                mesh.faces[b : b + 1, :nf],
                tex,
                mesh.texture_type,
                uvs,
            )
        )
    return out


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
