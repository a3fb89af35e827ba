"""The training objective of the reconstruction model: SoftRas's loss for two views per object."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recon.models import ModelSpec, meshes, render_eye_sets
from softjax.lighting import Lights
from softjax.losses import flatten_loss, laplacian_loss, multiview_iou_loss


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
      vertices: float ``[2B, V, 3]``: the meshes reconstructed from ``images_a`` then
        ``images_b``.
      colors: float ``[2B, F, 3]`` face colours (shading variant) or None.
      batch: ``images_a``, ``images_b`` float ``[B, S, S, 4]`` and ``viewpoints_a``,
        ``viewpoints_b`` float ``[B, 3]`` eye positions.
      sigma: the renderer's sigma (traced, for the decay schedule); None = ``spec.sigma_val``.
      lights: lights of the colour render (default SoftRas's).

    Returns:
      ``(loss, terms)``, float scalars: the mean of the four silhouette IoU losses (each mesh
      seen from both viewpoints) + lambda_lap Laplacian + lambda_flat flatten (+ lambda_color
      times the mean squared RGB error of the lit renders, shading variant); ``terms`` holds
      each part.
    """
    va, vb = batch["viewpoints_a"], batch["viewpoints_b"]
    eyes = jnp.stack([jnp.concatenate([va, va]), jnp.concatenate([vb, vb])])  # [2, 2B, 3]
    mesh = meshes(spec, vertices)
    sil = render_eye_sets(mesh, eyes, spec.silhouette_config(), sigma)  # [2, 2B, S, S, 4]
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
        rgb = render_eye_sets(
            meshes(spec, vertices, colors), eyes, spec.color_config(), sigma, lights
        )
        targets = [batch["images_a"], batch["images_a"], batch["images_b"], batch["images_b"]]
        target = jnp.stack([jnp.concatenate(targets[:2]), jnp.concatenate(targets[2:])])
        color = jnp.mean((rgb[..., :3] - target[..., :3]) ** 2)
        loss = loss + spec.lambda_color * color
        terms["color"] = color
    terms["loss"] = loss
    return loss, terms
