"""Lay a pulled invoice month out in staging exactly as the local reader finds an extract.

BigQuery hands rows over as Arrow record batches. They are spooled to one Parquet file as they
arrive (batch by batch, never all in memory), then DuckDB sorts them and writes the extract
layout the local form reads::

    <table>/schema.json                                         the table's schema (bq JSON form)
    <table>/invoice_month=YYYYMM/<table>-000000000000.json.gz   newline-delimited JSON, gzip

so local and BigQuery deliveries share one normalization. Why sort: BigQuery returns rows in
no particular order, and the landing store identifies a snapshot by its bytes; sorting on every
column makes an unchanged month give byte-identical files, hence the same snapshot, on every
pull. DuckDB's JSON writer gives FLOAT64 values as the shortest text that round-trips the
double, the text the reader casts exactly to DECIMAL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import NativeFile
from revshare.db import connect
from revshare.periods import Period
from revshare.sqlutil import lit

#: Rows per shard file (BigQuery's extract shards by size; the reader accepts any count).
SHARD_ROWS = 500_000
SPOOL_DIR = ".spool"


@dataclass(frozen=True)
class Staged:
    files: tuple[NativeFile, ...]
    rows: int
    #: Newest ``export_time`` among the pulled rows (ISO, UTC), if the table has the column.
    last_export_time: str | None


def spool_path(staging: Path) -> Path:
    return staging / SPOOL_DIR / "rows.parquet"


def spool(batches: Iterable[pa.RecordBatch], path: Path) -> int:
    """Write ``batches`` to ``path`` (replacing it) as they arrive; return the row count.

    Restartable: a retried download calls this again and starts the file over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rows, writer = 0, None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def lay_out(
    staging: Path,
    table: str,
    period: Period,
    schema_fields: Sequence[dict[str, Any]],
    shape: Callable[[str], str] | None = None,
) -> Staged:
    """Turn the spooled rows into ``schema.json`` plus sorted ``.json.gz`` shards.

    ``shape`` turns the SELECT of the spooled rows into the SELECT of the export records
    (pushdown: ``grain.nest_sql`` nests the flat grain result); None: the rows as pulled."""
    src = spool_path(staging)
    table_dir = staging / table
    part_rel = f"{table}/invoice_month={period.compact}"
    (staging / part_rel).mkdir(parents=True, exist_ok=True)
    schema_path = table_dir / "schema.json"
    schema_path.write_text(json.dumps(list(schema_fields), indent=2) + "\n")
    files = [NativeFile(schema_path, f"{table}/schema.json")]

    con = connect(temp_dir=staging / SPOOL_DIR / "duckdb")
    try:
        # ORDER BY ALL: every column, nested ones included, so equal months sort equally.
        rows_sql = f"SELECT * FROM read_parquet({lit(src)})"
        if shape is not None:
            rows_sql = shape(rows_sql)
        con.execute(f"CREATE TEMP TABLE pulled AS SELECT * FROM ({rows_sql}) ORDER BY ALL")
        names = {r[0] for r in con.execute("DESCRIBE pulled").fetchall()}
        last = "max(export_time)" if "export_time" in names else "NULL"
        row = con.execute(f"SELECT count(*), CAST({last} AS VARCHAR) FROM pulled").fetchone()
        assert row is not None
        rows, last_export = int(row[0]), row[1]
        for i in range((rows + SHARD_ROWS - 1) // SHARD_ROWS):
            name = f"{table}-{i:012d}.json.gz"
            path = staging / part_rel / name
            # rowid follows insertion order, which is the sorted order of the CTAS above.
            con.execute(
                f"COPY (SELECT * FROM pulled WHERE rowid >= {i * SHARD_ROWS} "
                f"AND rowid < {(i + 1) * SHARD_ROWS} ORDER BY rowid) "
                f"TO {lit(path)} (FORMAT json, COMPRESSION gzip)"
            )
            files.append(NativeFile(path, f"{part_rel}/{name}"))
    finally:
        con.close()
    shutil.rmtree(staging / SPOOL_DIR, ignore_errors=True)
    return Staged(tuple(files), rows, last_export)
