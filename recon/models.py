"""The single-view reconstruction network of SoftRas (Flax).

* :class:`Encoder`: 5x5 stride-2 convolutions with batch norm and ReLU, then dense layers with
  ReLU. ``shading=True`` adds two 5x5 stride-1 convolutions (after the first and the second
  stride-2 convolution, same widths).
* :class:`Decoder`: dense layers with ReLU to a centroid (3, times 0.1) and per-vertex offsets
  (V x 3) that deform the template (:func:`softjax.deform_vertices`; the template is the
  icosphere scaled by 0.5 and the result is scaled by 0.5 again, so meshes live in
  [-0.5, 0.5]^3). ``shading=True`` adds per-face RGB colours (sigmoid).
* :class:`Reconstructor`: encoder + decoder, images ``[B, 64, 64, 4]`` -> vertices ``[B, V, 3]``
  (and colours ``[B, F, 3]``).
* :class:`ModelSpec` / :func:`model_spec`: everything static about a model, read from a
  training config (the widths and the other values are those of ``config.model``; the paper's
  are in ``configs/softras.py``), and :func:`render_eye_sets`, the renders of the training loss
  (:mod:`recon.losses`).

Images are RGBA float in [0, 1], channels last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recon import protocol
from softjax.lighting import Lights
from softjax.mesh import Mesh, deform_vertices, icosphere_arrays
from softjax.render import RenderConfig, render

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

    channels: Sequence[int]  # of the stride-2 convolutions
    hidden: Sequence[int]  # of the dense layers
    shading: bool
    param_init: str  # see _layer_inits
    bn_momentum: float = 0.9  # PyTorch's BatchNorm momentum 0.1
    axis_name: str | None = None  # batch-norm statistics over this mapped axis (data parallel)

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
    hidden: Sequence[int]  # of the dense layers
    shading: bool
    param_init: str  # see _layer_inits
    centroid_scale: float = 0.1
    bias_scale: float = 1.0
    obj_scale: float = 0.5

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
    encoder_channels: Sequence[int]
    encoder_hidden: Sequence[int]
    decoder_hidden: Sequence[int]
    shading: bool
    param_init: str
    axis_name: str | None = None

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
    """Everything static about a reconstruction model: network widths, template, renderer, loss
    weights.

    Built from a training config by :func:`model_spec` (the config is the one source of these
    values); hashable, so it can be closed over by jitted functions.
    """

    template_level: int  # icosphere subdivisions (3: 642 vertices, 1280 faces)
    encoder_channels: tuple[int, ...]
    encoder_hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    shading: bool
    image_size: int
    sigma_val: float
    gamma_val: float
    dist_eps: float
    lambda_laplacian: float
    lambda_flatten: float
    lambda_color: float
    # soft_rasterize's backend: None ($SOFTJAX_BACKEND, else 'auto': the Pallas kernels on a GPU
    # once they pass their self-check), 'xla' or 'pallas'
    backend: str | None
    param_init: str  # how fresh parameters are drawn (see _layer_inits)

    def architecture(self) -> dict[str, Any]:
        """This spec's fields but the choices a checkpoint does not depend on (the rasterizer
        backend, the initialisation): what must match to resume a work directory."""
        run_choices = ("backend", "param_init")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in run_choices}

    @property
    def template_vertices(self) -> np.ndarray:
        """``[V, 3]`` float32 unit-sphere template (642 vertices at level 3)."""
        return icosphere_arrays(self.template_level)[0]

    @property
    def template_faces(self) -> np.ndarray:
        """``[F, 3]`` int32 template faces (1280 at level 3)."""
        return icosphere_arrays(self.template_level)[1]

    def network(self, axis_name: str | None = None) -> Reconstructor:
        """The Flax network; ``axis_name``: the mapped axis batch norm averages over."""
        return Reconstructor(
            template=self.template_vertices,
            num_faces=self.template_faces.shape[0],
            encoder_channels=self.encoder_channels,
            encoder_hidden=self.encoder_hidden,
            decoder_hidden=self.decoder_hidden,
            shading=self.shading,
            param_init=self.param_init,
            axis_name=axis_name,
        )

    def _renderer_overrides(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "sigma_val": self.sigma_val,
            "gamma_val": self.gamma_val,
            "dist_eps": self.dist_eps,
            "backend": self.backend,
        }

    def silhouette_config(self) -> RenderConfig:
        """The protocol's training renderer (:func:`recon.protocol.silhouette_render_config`)
        with this run's size, sigma, gamma, dist_eps and backend."""
        return protocol.silhouette_render_config(**self._renderer_overrides())

    def color_config(self) -> RenderConfig:
        """The shading variant's renderer (:func:`recon.protocol.color_render_config`) with this
        run's size, sigma, gamma, dist_eps and backend."""
        return protocol.color_render_config(**self._renderer_overrides())


def model_spec(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of an ml_collections training config (``config.model`` and the
    renderer and loss fields; see ``configs/softras.py``). A config without one of them (e.g.
    the ``config.json`` of a run made by an older softjax) raises ``ValueError`` naming it."""
    try:
        return _model_spec(config)
    except (AttributeError, KeyError) as e:
        field = str(e.args[0] if e.args else e).strip("'\"")
        raise ValueError(
            f"the training config has no field {field!r}, which the model needs; configs/"
            "softras.py lists every field (a run made by an older softjax may predate it: add "
            "it to the run's config.json)"
        ) from None


def _model_spec(config: Any) -> ModelSpec:
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
        lambda_color=float(m.lambda_color),
        backend=config.backend,
        param_init=str(m.param_init),
    )


def meshes(spec: ModelSpec, vertices: jax.Array, colors: jax.Array | None = None) -> Mesh:
    """Reconstructed vertices ``[B, V, 3]`` float (and face colours ``[B, F, 3]``) as a Mesh
    of the template's faces."""
    textures = None if colors is None else colors[:, :, None, :]
    return Mesh.create(vertices, spec.template_faces, textures=textures)  # faces broadcast


def render_eye_sets(
    mesh: Mesh,
    eyes: jax.Array,
    config: RenderConfig,
    sigma: jax.Array | float | None = None,
    lights: Lights | None = None,
) -> jax.Array:
    """Renders the B meshes of ``mesh`` from each of K eye sets ``eyes [K, B, 3]`` (image b of
    set k: mesh b seen from ``eyes[k, b]``) -> float ``[K, B, S, S, 4]``. ``sigma`` replaces
    ``config.sigma_val`` (traced: the decay schedule)."""
    return jax.vmap(lambda e: render(mesh, config, eye=e, sigma_val=sigma, lights=lights))(eyes)
