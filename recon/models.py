"""The single-view reconstruction network of SoftRas (Flax) and its loss.

* :class:`Encoder`: three 5x5 stride-2 convolutions (64, 128, 256 channels) with batch norm and
  ReLU, then three dense layers (1024, 1024, 512) with ReLU. ``shading=True`` adds two 5x5
  stride-1 convolutions (after the first and the second stride-2 convolution, same widths).
* :class:`Decoder`: two dense layers (1024, 2048) with ReLU to a centroid (3, times 0.1) and
  per-vertex offsets (V x 3) that deform the template (:func:`softjax.deform_vertices`; the
  template is the icosphere scaled by 0.5 and the result is scaled by 0.5 again, so meshes live
  in [-0.5, 0.5]^3). ``shading=True`` adds per-face RGB colours (sigmoid).
* :class:`Reconstructor`: encoder + decoder, images ``[B, 64, 64, 4]`` -> vertices ``[B, V, 3]``
  (and colours ``[B, F, 3]``).
* :func:`reconstruction_loss`: SoftRas's training loss for a batch of two views per object.

Images are RGBA float in [0, 1], channels last; widths are configurable so tests can use a
small network (the defaults are the paper's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from softjax.lighting import Lights
from softjax.losses import flatten_loss, laplacian_loss, multiview_iou_loss
from softjax.mesh import Mesh, deform_vertices, icosphere_arrays
from softjax.render import RenderConfig, render

CAMERA_DISTANCE = 2.732
VIEWING_ANGLE = 15.0


PARAM_INITS = ("pytorch", "flax")


def _uniform_fan_in(fan_in: int):
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: PyTorch's default for ``nn.Linear`` and
    ``nn.Conv2d`` weights (kaiming_uniform with a = sqrt(5)) and biases."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _layer_inits(param_init: str, fan_in: int) -> dict[str, Any]:
    """``kernel_init`` / ``bias_init`` of a Dense or Conv layer with ``fan_in`` inputs per
    output: ``'pytorch'`` (the original network's start) or ``'flax'`` (Flax's defaults:
    LeCun normal weights, zero biases)."""
    if param_init == "flax":
        return {}
    if param_init != "pytorch":
        raise ValueError(f"param_init must be one of {list(PARAM_INITS)}, got {param_init!r}")
    return {"kernel_init": _uniform_fan_in(fan_in), "bias_init": _uniform_fan_in(fan_in)}


def dense(x: jax.Array, features: int, name: str, param_init: str) -> jax.Array:
    """``nn.Dense`` applied to ``x`` with the initialisation ``param_init``."""
    return nn.Dense(features, name=name, **_layer_inits(param_init, x.shape[-1]))(x)


class Encoder(nn.Module):
    """Image ``[B, H, W, C]`` -> feature ``[B, hidden[-1]]``."""

    channels: Sequence[int] = (64, 128, 256)
    hidden: Sequence[int] = (1024, 1024, 512)
    shading: bool = False
    bn_momentum: float = 0.9  # PyTorch's BatchNorm momentum 0.1
    axis_name: str | None = None  # batch-norm statistics over this mapped axis (data parallel)
    param_init: str = "pytorch"  # see _layer_inits

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def conv_bn(x, features, stride, name):
            inits = _layer_inits(self.param_init, 5 * 5 * x.shape[-1])
            x = nn.Conv(features, (5, 5), strides=(stride, stride), padding=2, name=name, **inits)(
                x
            )
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=1e-5,
                axis_name=self.axis_name,
                name=f"{name}_bn",
            )(x)
            return nn.relu(x)

        for i, features in enumerate(self.channels):
            x = conv_bn(x, features, 2, f"conv{i + 1}")
            if self.shading and i < 2:
                x = conv_bn(x, features, 1, f"conv{i + 1}b")
        x = x.reshape(x.shape[0], -1)
        for i, features in enumerate(self.hidden):
            x = nn.relu(dense(x, features, f"fc{i + 1}", self.param_init))
        return x


class Decoder(nn.Module):
    """Feature ``[B, D]`` -> deformed template vertices ``[B, V, 3]`` (and face colours)."""

    template: np.ndarray  # [V, 3] unit-sphere template vertices
    num_faces: int
    hidden: Sequence[int] = (1024, 2048)
    centroid_scale: float = 0.1
    bias_scale: float = 1.0
    obj_scale: float = 0.5
    shading: bool = False
    param_init: str = "pytorch"  # see _layer_inits

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        init = self.param_init
        for i, features in enumerate(self.hidden):
            x = nn.relu(dense(x, features, f"fc{i + 1}", init))
        nv = self.template.shape[0]
        centroid = dense(x, 3, "fc_centroid", init) * self.centroid_scale
        offsets = dense(x, nv * 3, "fc_bias", init).reshape(-1, nv, 3) * self.bias_scale
        base = jnp.asarray(self.template, x.dtype) * self.obj_scale
        vertices = deform_vertices(base, offsets, centroid) * 0.5
        colors = None
        if self.shading:
            colors = nn.sigmoid(dense(x, self.num_faces * 3, "fc_color", init))
            colors = colors.reshape(-1, self.num_faces, 3)
        return vertices, colors


class Reconstructor(nn.Module):
    """RGBA images ``[B, 64, 64, 4]`` -> ``(vertices [B, V, 3], colors [B, F, 3] or None)``."""

    template: np.ndarray
    num_faces: int
    encoder_channels: Sequence[int] = (64, 128, 256)
    encoder_hidden: Sequence[int] = (1024, 1024, 512)
    decoder_hidden: Sequence[int] = (1024, 2048)
    shading: bool = False
    axis_name: str | None = None
    param_init: str = "pytorch"

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False):
        feature = Encoder(
            self.encoder_channels,
            self.encoder_hidden,
            shading=self.shading,
            axis_name=self.axis_name,
            param_init=self.param_init,
            name="encoder",
        )(images, train)
        return Decoder(
            self.template,
            self.num_faces,
            self.decoder_hidden,
            shading=self.shading,
            param_init=self.param_init,
            name="decoder",
        )(feature)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything static about a reconstruction model: network widths, template, renderer.

    Built from a training config by :func:`model_spec`; hashable, so it can be closed over by
    jitted functions.
    """

    template_level: int = 3
    encoder_channels: tuple[int, ...] = (64, 128, 256)
    encoder_hidden: tuple[int, ...] = (1024, 1024, 512)
    decoder_hidden: tuple[int, ...] = (1024, 2048)
    shading: bool = False
    image_size: int = 64
    sigma_val: float = 1e-4
    gamma_val: float = 1e-4
    dist_eps: float = 1e-10
    lambda_laplacian: float = 5e-3
    lambda_flatten: float = 5e-4
    lambda_color: float = 1.0
    # soft_rasterize's backend: None ($SOFTJAX_BACKEND, else 'auto': the Pallas kernels on a GPU
    # once they pass their self-check), 'xla' or 'pallas'
    backend: str | None = None
    param_init: str = "pytorch"  # how fresh parameters are drawn (see _layer_inits)

    def architecture(self) -> ModelSpec:
        """This spec without the choices a checkpoint does not depend on (the rasterizer
        backend, the initialisation): what must match to resume a work directory."""
        return dataclasses.replace(self, backend=None, param_init="pytorch")

    @property
    def template_vertices(self) -> np.ndarray:
        """``[V, 3]`` float32 unit-sphere template (642 vertices at level 3)."""
        return icosphere_arrays(self.template_level)[0]

    @property
    def template_faces(self) -> np.ndarray:
        """``[F, 3]`` int32 template faces (1280 at level 3)."""
        return icosphere_arrays(self.template_level)[1]

    def network(self, axis_name: str | None = None) -> Reconstructor:
        return Reconstructor(
            template=self.template_vertices,
            num_faces=self.template_faces.shape[0],
            encoder_channels=self.encoder_channels,
            encoder_hidden=self.encoder_hidden,
            decoder_hidden=self.decoder_hidden,
            shading=self.shading,
            axis_name=axis_name,
            param_init=self.param_init,
        )

    def silhouette_config(self) -> RenderConfig:
        """SoftRas's training renderer: look_at, viewing angle 15, hard rgb, no lighting."""
        return RenderConfig(
            image_size=self.image_size,
            camera_mode="look_at",
            viewing_angle=VIEWING_ANGLE,
            sigma_val=self.sigma_val,
            gamma_val=self.gamma_val,
            dist_eps=self.dist_eps,
            aggr_func_rgb="hard",
            lighting=False,
            backend=self.backend,
        )

    def color_config(self) -> RenderConfig:
        """The shading variant's renderer: lit, softmax colour aggregation."""
        return self.silhouette_config().replace(aggr_func_rgb="softmax", lighting=True)


def model_spec(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of an ml_collections training config (``config.model``)."""
    m = config.model
    return ModelSpec(
        template_level=int(m.template_level),
        encoder_channels=tuple(int(c) for c in m.encoder_channels),
        encoder_hidden=tuple(int(c) for c in m.encoder_hidden),
        decoder_hidden=tuple(int(c) for c in m.decoder_hidden),
        shading=bool(m.shading),
        image_size=int(config.image_size),
        sigma_val=float(config.sigma_val),
        gamma_val=float(config.gamma_val),
        dist_eps=float(config.dist_eps),
        lambda_laplacian=float(config.lambda_laplacian),
        lambda_flatten=float(config.lambda_flatten),
        lambda_color=float(m.get("lambda_color", 1.0)),
        backend=config.get("backend"),
        param_init=str(m.get("param_init", "pytorch")),
    )


def meshes(spec: ModelSpec, vertices: jax.Array, colors: jax.Array | None = None) -> Mesh:
    """Reconstructed vertices ``[B, V, 3]`` (and face colours ``[B, F, 3]``) as a Mesh."""
    f = spec.template_faces
    faces = jnp.broadcast_to(jnp.asarray(f), (vertices.shape[0],) + f.shape)
    textures = None if colors is None else colors[:, :, None, :]
    return Mesh.create(vertices, faces, textures=textures)


def render_views(
    mesh: Mesh, eyes: jax.Array, config: RenderConfig, sigma=None, lights: Lights | None = None
) -> jax.Array:
    """Renders the B meshes of ``mesh`` from K eye sets ``eyes [K, B, 3]`` (vmap over eye sets,
    one mesh per image) -> ``[K, B, S, S, 4]``."""
    return jax.vmap(lambda e: render(mesh, config, eye=e, sigma_val=sigma, lights=lights))(eyes)


def reconstruction_loss(
    spec: ModelSpec,
    vertices: jax.Array,
    colors: jax.Array | None,
    batch: dict[str, jax.Array],
    sigma: jax.Array | float | None = None,
    lights: Lights | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SoftRas's training loss for meshes reconstructed from two views of each object.

    Args:
      spec: the model spec.
      vertices: ``[2B, V, 3]``: the meshes reconstructed from ``images_a`` then ``images_b``.
      colors: ``[2B, F, 3]`` face colours (shading variant) or None.
      batch: ``images_a``, ``images_b`` ``[B, S, S, 4]`` float and ``viewpoints_a``,
        ``viewpoints_b`` ``[B, 3]`` eye positions.
      sigma: the renderer's sigma (traced, for the decay schedule); None = ``spec.sigma_val``.
      lights: lights of the colour render (default SoftRas's).

    Returns:
      ``(loss, terms)``: the mean of the four silhouette IoU losses (each mesh seen from both
      viewpoints) + lambda_lap Laplacian + lambda_flat flatten (+ lambda_color times the mean
      squared RGB error of the lit renders, shading variant); ``terms`` holds each part.
    """
    va, vb = batch["viewpoints_a"], batch["viewpoints_b"]
    eyes = jnp.stack([jnp.concatenate([va, va]), jnp.concatenate([vb, vb])])  # [2, 2B, 3]
    mesh = meshes(spec, vertices)
    sil = render_views(mesh, eyes, spec.silhouette_config(), sigma)  # [2, 2B, S, S, 4]
    b = batch["images_a"].shape[0]
    # (mesh from a, mesh from b) x (viewpoint a, viewpoint b): SoftRas's ordering
    predicts = [sil[0, :b], sil[0, b:], sil[1, :b], sil[1, b:]]
    iou = multiview_iou_loss(predicts, batch["images_a"], batch["images_b"])
    faces = spec.template_faces
    lap = laplacian_loss(faces, vertices.shape[1])(vertices).mean()
    flat = flatten_loss(faces)(vertices).mean()
    loss = iou + spec.lambda_laplacian * lap + spec.lambda_flatten * flat
    terms = {"iou_loss": iou, "laplacian": lap, "flatten": flat}
    if spec.shading:
        rgb = render_views(meshes(spec, vertices, colors), eyes, spec.color_config(), sigma, lights)
        targets = [batch["images_a"], batch["images_a"], batch["images_b"], batch["images_b"]]
        target = jnp.stack([jnp.concatenate(targets[:2]), jnp.concatenate(targets[2:])])
        color = jnp.mean((rgb[..., :3] - target[..., :3]) ** 2)
        loss = loss + spec.lambda_color * color
        terms["color"] = color
    terms["loss"] = loss
    return loss, terms
