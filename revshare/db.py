"""DuckDB connections set up the same way everywhere: UTC, bounded memory, spill to disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")


def connect(
    path: Path | str = ":memory:", *, memory_limit: str = "1GB", temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection whose session time zone is UTC (so TIMESTAMPTZ reads back as UTC, never
    the machine's zone) and whose memory is capped, so large months spill instead of growing."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = '{temp_dir}'")
    return con


def each_on_cursors(
    con: duckdb.DuckDBPyConnection,
    work: Callable[[duckdb.DuckDBPyConnection, T], object],
    items: Sequence[T],
) -> None:
    """``work(cursor, item)`` for every item, as many at once as DuckDB has threads, each on
    a cursor of ``con`` (same memory cap; DuckDB releases the GIL while it works).

    For per-file passes that run on one thread each (a gzipped file is decompressed and
    parsed on one): one file at a time left a core idle. The first failure in ``items``
    order is raised, as a loop would raise it."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])

    def one(item: T) -> None:
        cur = con.cursor()
        try:
            work(cur, item)
        finally:
            cur.close()

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items)))) as pool:
        list(pool.map(one, items))  # in order: re-raises the earliest item's failure
