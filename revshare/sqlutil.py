"""Safe pieces of SQL text. Values go in as parameters where DuckDB allows it; where it does not
(file paths in table functions, COPY targets), they go through these quoting helpers."""

from __future__ import annotations

import re
from pathlib import Path

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def lit(value: str | Path) -> str:
    """A single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """A double-quoted identifier; refuses anything but plain names, so config cannot inject."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def lit_list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"
