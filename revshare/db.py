"""DuckDB connections set up the same way everywhere: UTC, bounded memory, spill to disk."""

from __future__ import annotations

from pathlib import Path

import duckdb


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
