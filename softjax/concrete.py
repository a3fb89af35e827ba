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
