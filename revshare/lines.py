"""The lines behind discrepancies (and behind restatements), kept in Parquet files from
reconcile to publish.

A month with a large discrepancy can have millions of billing lines behind it (6.9 million at
10 million lines per source in the benchmark). Held as Arrow tables from each partner's
reconcile until publish, they kept the flow's process several GB large. So each partner's
reconcile writes its lines from DuckDB straight to a file under the run's ``work/``, publish
joins the files into ``results/discrepancy_lines.parquet``, and the report, the packets and
the ledger read that file in bounded slices (docs/scaling.md, docs/performance.md).

Every file is ordered by all its columns: a rerun on the same snapshots writes the same rows in
the same order, and the file of a partner whose lines were put back after a warehouse pushdown
is ordered like one from a full pull.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from revshare.sqlutil import lit
from revshare.store import write_atomically

#: Rows per slice when a reader walks a lines file.
BATCH_ROWS = 65_536
#: The files of one partner's result, in its ``RunPaths.partner_results`` folder.
BEHIND, RESTATED = "lines.parquet", "restated.parquet"


def copy(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> Path:
    """The rows of ``sql`` into ``out`` under a temporary name, then renamed: never partial."""
    return write_atomically(
        out, lambda tmp: con.execute(f"COPY ({sql}) TO {lit(tmp)} (FORMAT parquet)")
    )


def write(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> Path:
    """The rows of ``sql`` (columns of ``reconcile_sql.LINES_SQL``) into ``out``, ordered by
    every column."""
    return copy(con, f"{sql} ORDER BY ALL", out)


def concat(parts: list[Path], out: Path) -> Path | None:
    """The partners' files one after the other in ``parts`` order, into ``out``; None when
    there are none. Row group by row group through Arrow, so one row group is in memory.

    DuckDB's COPY kept the order by holding row groups back: for the 6.9 million lines of a
    10M-line month, 5.1 s and 0.9 GB more memory (the flow's peak); this way, 7.0 s and
    0.2 GB (docs/performance.md)."""
    if not parts:
        return None
    schema = pq.read_schema(parts[0])

    def join(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                file = pq.ParquetFile(part)
                for i in range(file.num_row_groups):
                    # Every part comes from the same SELECT; the cast refuses any that does not.
                    writer.write_table(file.read_row_group(i).select(schema.names).cast(schema))

    return write_atomically(out, join)


def count(path: Path | None) -> int:
    return 0 if path is None else pq.ParquetFile(path).metadata.num_rows


def batches(path: Path, ids: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The file's rows in order, a slice at a time; only those of discrepancies ``ids`` when
    given (slices with none of them are skipped)."""
    wanted = None if ids is None else pa.array(sorted(ids), pa.string())
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        if wanted is not None:
            batch = batch.filter(pc.is_in(batch["discrepancy_id"], value_set=wanted))
        if batch.num_rows:
            yield batch
