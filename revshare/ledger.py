"""Writing the warehouse: a DuckDB file holding the run ledger and every run's results.

The ledger answers "which billing snapshot was this statement first checked against?", which
is what a restatement is measured from. Results are appended per run (keyed by run id), so a
rerun never overwrites the figures an earlier report showed. Each write is one short
transaction on a connection that waits for another process's write to finish. The reads are
in ``revshare.ledger_reads``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from revshare.db import connect
from revshare.ledger_reads import INTERRUPTED, RUNNING, _resolve_run_id, _retry_locked
from revshare.sqlutil import lit

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY, period VARCHAR, partners VARCHAR[], started_at TIMESTAMPTZ,
  finished_at TIMESTAMPTZ, status VARCHAR, report_path VARCHAR);
CREATE TABLE IF NOT EXISTS run_sources (
  run_id VARCHAR, partner VARCHAR, kind VARCHAR, source_type VARCHAR, snapshot_id VARCHAR,
  rows BIGINT, status VARCHAR, reason VARCHAR);
CREATE TABLE IF NOT EXISTS run_details (
  run_id VARCHAR PRIMARY KEY, params VARCHAR, flow_run_id VARCHAR, duration_seconds DOUBLE,
  timings VARCHAR, partners VARCHAR, notifications VARCHAR);
CREATE TABLE IF NOT EXISTS run_marks (
  run_id VARCHAR PRIMARY KEY, marked_at TIMESTAMPTZ, note VARCHAR);
ALTER TABLE run_sources ADD COLUMN IF NOT EXISTS rows_read BIGINT;
ALTER TABLE run_sources ADD COLUMN IF NOT EXISTS rows_normalized BIGINT;
ALTER TABLE run_sources ADD COLUMN IF NOT EXISTS rows_rejected BIGINT;
"""
# run_sources.rows_* (rows read = normalized + rejected) are additive as well: an older
# warehouse gains the columns on its next write, NULL for the runs recorded before.
# run_details and run_marks are additive (CREATE TABLE IF NOT EXISTS): a warehouse written
# before they existed gains them on its next write and its older runs simply have none.


def _con(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _retry_locked(lambda: connect(path))
    con.execute(_DDL)
    return con


def record_run(
    path: Path, run: dict, sources: list[dict], tables: dict[str, pa.Table | Path]
) -> None:
    """Append one run, its sources and its result tables, in one transaction. A table given
    as a Parquet file is streamed from it (the lines behind discrepancies can be millions)."""
    con = _con(path)
    con.execute("BEGIN")
    # OR REPLACE: the run's own ``running`` row (record_start) becomes its outcome.
    con.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", [
        run["run_id"], run["period"], run["partners"], run["started_at"], run["finished_at"],
        run["status"], run["report_path"]])  # fmt: skip
    if sources:
        con.register("_src", pa.Table.from_pylist(sources))
        con.execute(
            "INSERT INTO run_sources BY NAME SELECT ? AS run_id, partner, kind, source_type,"
            " snapshot_id, rows, status, reason, rows_read, rows_normalized, rows_rejected"
            " FROM _src",
            [run["run_id"]],
        )
    for name, table in tables.items():
        if isinstance(table, Path):
            con.execute(f"CREATE TEMP VIEW _t AS SELECT * FROM read_parquet({lit(table)})")
        else:
            con.register("_t", table)
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0]
        if not exists:
            con.execute(
                f'CREATE TABLE "{name}" AS SELECT ? AS run_id, * FROM _t LIMIT 0', [run["run_id"]]
            )
        _add_new_columns(con, name)
        con.execute(f'INSERT INTO "{name}" BY NAME SELECT ? AS run_id, * FROM _t', [run["run_id"]])
        if isinstance(table, Path):
            con.execute("DROP VIEW _t")
        else:
            con.unregister("_t")
    con.execute("COMMIT")
    con.close()


def _add_new_columns(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Result tables evolve additively: a run whose table has columns the stored one lacks
    (a newer version, or partners of another kind) adds them; older rows read NULL there."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [name]
    ).fetchall()}  # fmt: skip
    for col, typ in con.execute("SELECT column_name, column_type FROM (DESCRIBE _t)").fetchall():
        if col not in have:
            typ = "VARCHAR" if typ == "NULL" else typ
            con.execute(f'ALTER TABLE "{name}" ADD COLUMN "{col}" {typ}')


def record_details(path: Path, run_id: str, details: dict[str, Any]) -> None:
    """Operational details of a recorded run: parameters, flow run, timings, per-partner
    outcome and notifications sent. Kept beside ``runs`` so ``record_run`` stays as it was."""
    con = _con(path)
    try:
        con.execute(
            "INSERT OR REPLACE INTO run_details VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                json.dumps(details.get("params", {}), default=str),
                details.get("flow_run_id"),
                details.get("duration_seconds"),
                json.dumps(details.get("timings", {}), default=str),
                json.dumps(details.get("partners", []), default=str),
                json.dumps(details.get("notifications", []), default=str),
            ],
        )
    finally:
        con.close()


def record_start(
    path: Path, run_id: str, period: str, partners: list[str], started_at: datetime
) -> None:
    """A ``running`` row for a run that has just taken its locks; ``record_run`` replaces
    it. A run killed before publishing keeps this row until ``mark_interrupted``."""
    con = _con(path)
    try:
        con.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, NULL, ?, NULL)",
            [run_id, period, partners, started_at, RUNNING],
        )
    finally:
        con.close()


def mark_interrupted(path: Path, run_ids: list[str], at: datetime) -> int:
    """Mark these ``running`` runs ``interrupted`` (their process is gone); returns how many."""
    if not run_ids:
        return 0
    con = _con(path)
    try:
        return con.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE status = ? "
            "AND list_contains(?, run_id)",
            [INTERRUPTED, at, RUNNING, run_ids],
        ).fetchone()[0]
    finally:
        con.close()


def mark_run(path: Path, run_id: str, at: datetime, note: str = "", remove: bool = False) -> str:
    """Finance marks a run to keep (retention never prunes it), or removes the mark.
    ``run_id`` may be a unique prefix; returns the full id. Raises KeyError as ``show_run``."""
    con = _con(path)
    try:
        rid = _resolve_run_id(con, run_id)
        if remove:
            con.execute("DELETE FROM run_marks WHERE run_id = ?", [rid])
        else:
            con.execute("INSERT OR REPLACE INTO run_marks VALUES (?, ?, ?)", [rid, at, note])
        return rid
    finally:
        con.close()
