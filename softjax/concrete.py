"""Whether an argument has a value now or is being traced (``jit`` / ``grad`` / ``vmap``).

Argument checks that need a value (index ranges, ``near < far``) run only on concrete inputs.
Asking NumPy for the value and catching JAX's public conversion errors answers this without
``jax.core.Tracer``, which lives in an internal module that JAX is retiring.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

_TRACED_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def concrete_value(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when ``x`` is an abstract (traced) value.

    Args:
      x: a NumPy / Python value or a JAX array (concrete or traced).

    Returns:
      ``np.asarray(x)`` for a concrete value (a device array is copied to the host: use it on
      small arrays and scalars), ``None`` for a tracer.
    """
    try:
        return np.asarray(x)
    except _TRACED_ERRORS:
        return None


def check_face_counts(face_counts: Any, batch: int, faces: int, *, need_concrete: bool = False):
    """Checks the per-mesh face counts of a padded batch (``softjax.pad_meshes``); the one check
    of every function that takes them.

    Args:
      face_counts: ``[B]`` integer array (NumPy, JAX, concrete or traced).
      batch, faces: B and F (the padded face count) of the batch.
      need_concrete: raise for a traced value (callers that build tables from the counts).

    Returns:
      ``face_counts`` as an array (unchanged values; a traced value stays traced).

    Raises:
      ValueError: a traced value where ``need_concrete``, a shape other than ``[B]``, a dtype
        that is not an integer type, or (when concrete) a value outside ``[0, F]``.
    """
    counts = face_counts if hasattr(face_counts, "shape") else np.asarray(face_counts)
    values = concrete_value(counts)
    if values is None and need_concrete:
        raise ValueError(
            "face_counts must be concrete (NumPy or a non-traced jax array), not traced"
        )
    if tuple(counts.shape) != (batch,):
        raise ValueError(
            f"face_counts must have shape [B] = [{batch}] (one per mesh), got {tuple(counts.shape)}"
        )
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"face_counts must be integers, got dtype {counts.dtype}")
    if values is not None and values.size and (values.min() < 0 or values.max() > faces):
        raise ValueError(
            f"face_counts must lie in [0, F] = [0, {faces}], got values in "
            f"[{values.min()}, {values.max()}]"
        )
    return counts
