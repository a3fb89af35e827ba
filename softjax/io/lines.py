"""Logical lines and number fields of OBJ / MTL text files (read, and written as rows)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["floats", "line_text", "logical_lines", "rows", "statements"]


def logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields ``(lineno, text)``: lines without their newline, backslash continuations joined
    (numbered by their first physical line)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        pending: str | None = None
        start = 0
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if pending is None:
                start = lineno
            else:
                line = pending + " " + line
            if line.endswith("\\"):
                pending = line[:-1]
                continue
            pending = None
            yield start, line
        if pending is not None:
            yield start, pending


def statements(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yields ``(lineno, line, body)`` for each logical line with content; ``body`` is the
    line without its ``#`` comment and surrounding blanks."""
    for lineno, line in logical_lines(path):
        body = line.split("#", 1)[0].strip()
        if body:
            yield lineno, line, body


def line_text(path: Path, lineno: int) -> str:
    """The logical line that starts at physical line ``lineno`` (``""`` if none does)."""
    for n, text in logical_lines(path):
        if n == lineno:
            return text
    return ""


def floats(tokens: list[str]) -> list[float]:
    """The tokens as floats; raises ValueError for a non-number."""
    return [float(t) for t in tokens]


def rows(fmt: str, arr: np.ndarray) -> str:
    """One ``fmt % row`` line per row of the 2-D array ``arr`` (``fmt`` ends with a newline)."""
    return "".join(fmt % tuple(row) for row in np.asarray(arr).tolist())
