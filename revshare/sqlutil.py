"""Safe pieces of SQL text. Values go in as parameters where DuckDB allows it; where it does not
(file paths in table functions, COPY targets), they go through these quoting helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

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


def exact_decimal(expr: str, cast: str = "CAST", *, whole_first: bool = False) -> str:
    """Text -> the canonical DECIMAL(38,12), exactly as DuckDB's own cast would round it.

    DuckDB parses text into a 128-bit DECIMAL slowly (2 to 7 us a value: seconds per million
    lines, the largest cost of normalizing a month). Two 64-bit parses give the same value far
    faster and cover nearly every billing figure, so the 128-bit parse is left for the rest:

    - DECIMAL(18,12) has the canonical scale, so it rounds identically; it fails for values of
      10^6 and more.
    - Whole numbers of up to 18 digits (token counts arrive as ``1234567`` or ``1234567.0``)
      parse as BIGINT. Only plain digits qualify: BIGINT's own cast would round ``1.5`` or
      ``1.25e2`` to a whole number.

    ``whole_first`` (token counts): a failed 64-bit parse costs DuckDB about 0.2 us, more
    than a good one, so a column of whole numbers of a million and more is parsed as BIGINT
    first, and kept where the text is exactly that number's own (``n`` or ``n.0``): 3.0 s ->
    0.6 s for 9.7M Cloud Billing usage amounts. Fractional figures pay about 0.04 us more.

    ``cast="TRY_CAST"`` gives NULL instead of an error for text that is not a number.
    """
    whole = f"regexp_extract({expr}, '^\\s*(-?[0-9]{{1,18}})(\\.0*)?\\s*$', 1)"
    parsed = (
        f"coalesce(CAST(TRY_CAST({expr} AS DECIMAL(18,12)) AS DECIMAL(38,12)), "
        f"CAST(TRY_CAST({whole} AS BIGINT) AS DECIMAL(38,12)), "
        f"{cast}({expr} AS DECIMAL(38,12)))"
    )
    if not whole_first:
        return parsed
    n = f"TRY_CAST({expr} AS BIGINT)"
    own = f"CAST({n} AS VARCHAR)"
    return (
        f"CASE WHEN {expr} IN ({own}, {own} || '.0') THEN CAST({n} AS DECIMAL(38,12)) "
        f"ELSE {parsed} END"
    )


def exact_product(a: str, b: str, *, b_places: int) -> str:
    """``CAST(a * CAST(b AS DECIMAL(18,10)) AS DECIMAL(38,12))`` for ``a`` a DECIMAL of at most
    12 places (a price, credits): the same value, without rounding where none is needed.

    The product of 12 places and a 10-place rate has 22, and DuckDB brings a 128-bit DECIMAL
    to 12 places by 128-bit division, about 0.9 us a value: 7.6 s for the costs of 8.5M
    Cortex lines. When ``b`` has at most ``b_places`` decimals and ``a`` at most ``12 - b_places``
    (told apart on 64-bit values; ``a`` of 10^6 and more fails that cast), the shortened
    operands multiply to exactly 12 places, which is only widened. Other rows take the cast."""
    rate = f"CAST({b} AS DECIMAL(18,10))"
    short_a = f"CAST(TRY_CAST({a} AS DECIMAL(18,12)) AS DECIMAL(18,{12 - b_places}))"
    short_b = f"CAST({rate} AS DECIMAL(18,{b_places}))"
    # Widened first: DuckDB multiplies two 64-bit DECIMALs in 64 bits, and may overflow.
    wide_a = f"CAST({short_a} AS DECIMAL(38,{12 - b_places}))"
    return (
        f"CASE WHEN {short_a} = {a} AND {short_b} = {rate} "
        f"THEN CAST({wide_a} * {short_b} AS DECIMAL(38,12)) "
        f"ELSE CAST({a} * {rate} AS DECIMAL(38,12)) END"
    )


def half_even(expr: str, places: int) -> str:
    """An exact DECIMAL rounded half to even to ``places`` decimals, as DECIMAL(38, places).

    DuckDB's ``round`` rounds half away from zero, and ``round_even`` returns a DOUBLE: the
    digit is decided here on the exact scaled value instead."""
    scaled = f"(({expr}) * {10**places})"
    units = f"trunc({scaled})"
    frac = f"abs({scaled} - {units})"
    up = f"({frac} > 0.5 OR ({frac} = 0.5 AND {units} % 2 <> 0))"
    whole = f"CAST({units} + CASE WHEN {up} THEN sign({scaled}) ELSE 0 END AS DECIMAL(38,0))"
    if not places:
        return whole
    unit = f"CAST('{Decimal(1).scaleb(-places):f}' AS DECIMAL({places + 1},{places}))"
    return f"CAST({whole} * {unit} AS DECIMAL(38,{places}))"


def dict_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts keyed by column name (for small results only)."""
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def parquet_scan(files: Sequence[tuple[str, Path | str]]) -> str:
    """One scan over Parquet files that share their columns and types, ``(relpath, path)`` in
    order, as a subquery: the files' columns, ``file_row_number`` and ``_src_file`` (the
    row's relpath).

    A month arrives in dozens of part files, each often one row group. One SELECT per file,
    joined by UNION ALL, ran on about one of two cores; one multi-file scan spreads the files
    over the threads (a 10M-line CUR month normalized in 32 s instead of 55 s)."""
    options = "file_row_number = true, hive_partitioning = false"
    if len(files) == 1:
        ((rel, path),) = files
        return f"(SELECT {lit(rel)} AS _src_file, * FROM read_parquet({lit(path)}, {options}))"
    paths = ", ".join(lit(path) for _, path in files)
    whens = " ".join(f"WHEN {lit(path)} THEN {lit(rel)}" for rel, path in files)
    return (
        f"(SELECT CASE filename {whens} END AS _src_file, * EXCLUDE (filename) "
        f"FROM read_parquet([{paths}], {options}, filename = true))"
    )
