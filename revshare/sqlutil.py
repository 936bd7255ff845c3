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


def exact_decimal(expr: str, cast: str = "CAST") -> str:
    """Text -> the canonical DECIMAL(38,12), exactly as DuckDB's own cast would round it.

    DuckDB parses text into a 128-bit DECIMAL slowly (about 2 us a value); the 64-bit
    DECIMAL(18,12) parse is some 50x faster and has the same scale, so it rounds identically.
    It fails for values of 10^6 and more, which then take the 128-bit path. ``cast="TRY_CAST"``
    gives NULL instead of an error for text that is not a number.
    """
    return (
        f"coalesce(CAST(TRY_CAST({expr} AS DECIMAL(18,12)) AS DECIMAL(38,12)), "
        f"{cast}({expr} AS DECIMAL(38,12)))"
    )
