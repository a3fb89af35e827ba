"""Errors and warnings raised while reading OBJ / MTL files."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["ObjError", "ObjWarning", "warn"]


class ObjError(ValueError):
    """Malformed OBJ or MTL input.

    The message names the file, the 1-based line number and the offending line text (when the
    problem belongs to a line). Attributes ``path``, ``lineno`` and ``line`` hold them too.
    """

    def __init__(
        self,
        message: str,
        path: str | os.PathLike | None = None,
        lineno: int | None = None,
        line: str | None = None,
    ):
        self.path = None if path is None else str(path)
        self.lineno = lineno
        self.line = line
        text = message
        if path is not None:
            where = f"{path}" if lineno is None else f"{path}, line {lineno}"
            text = f"{where}: {message}"
            if line is not None:
                text += f': "{line}"'
        super().__init__(text)


class ObjWarning(UserWarning):
    """Recoverable OBJ / MTL problem (missing material library or texture image, unknown
    material or statement); loading goes on with the documented fallback."""


def warn(message: str) -> None:
    """Issues an :class:`ObjWarning` attributed to the first caller outside ``softjax.io``.

    The user wants to see their own ``load_obj`` call in the warning, not the helper inside
    this package that noticed the problem, however deep that helper sits.
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is this function's caller, i.e. ``frame``
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "softjax.io."
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, ObjWarning, stacklevel=level)
