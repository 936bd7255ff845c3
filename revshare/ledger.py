"""The warehouse: a DuckDB file holding the run ledger and every run's results.

The ledger answers "which billing snapshot was this statement first checked against?", which
is what a restatement is measured from. Results are appended per run (keyed by run id), so a
rerun never overwrites the figures an earlier report showed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from revshare.db import connect

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY, period VARCHAR, partners VARCHAR[], started_at TIMESTAMPTZ,
  finished_at TIMESTAMPTZ, status VARCHAR, report_path VARCHAR);
CREATE TABLE IF NOT EXISTS run_sources (
  run_id VARCHAR, partner VARCHAR, kind VARCHAR, source_type VARCHAR, snapshot_id VARCHAR,
  rows BIGINT, status VARCHAR, reason VARCHAR);
"""


def _con(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(path)
    con.execute(_DDL)
    return con


def first_billing_snapshot(
    path: Path, period: str, partner: str, statement_snapshot: str
) -> str | None:
    """The billing snapshot of the earliest successful run that reconciled this statement."""
    if not path.exists():
        return None
    con = _con(path)
    row = con.execute(
        """
        SELECT b.snapshot_id FROM runs r
        JOIN run_sources s ON s.run_id = r.run_id AND s.kind = 'statement'
        JOIN run_sources b ON b.run_id = r.run_id AND b.kind = 'billing'
             AND b.partner = s.partner
        WHERE r.period = ? AND s.partner = ? AND s.snapshot_id = ? AND s.status = 'ok'
              AND b.status = 'ok'
        ORDER BY r.started_at, r.run_id LIMIT 1""",
        [period, partner, statement_snapshot],
    ).fetchone()
    con.close()
    return row[0] if row else None


def record_run(path: Path, run: dict, sources: list[dict], tables: dict[str, pa.Table]) -> None:
    """Append one run, its sources and its result tables, in one transaction."""
    con = _con(path)
    con.execute("BEGIN")
    con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", [
        run["run_id"], run["period"], run["partners"], run["started_at"], run["finished_at"],
        run["status"], run["report_path"]])  # fmt: skip
    if sources:
        con.register("_src", pa.Table.from_pylist(sources))
        con.execute(
            "INSERT INTO run_sources SELECT ? AS run_id, partner, kind, source_type,"
            " snapshot_id, rows, status, reason FROM _src",
            [run["run_id"]],
        )
    for name, table in tables.items():
        con.register("_t", table)
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0]
        if not exists:
            con.execute(
                f'CREATE TABLE "{name}" AS SELECT ? AS run_id, * FROM _t LIMIT 0', [run["run_id"]]
            )
        con.execute(f'INSERT INTO "{name}" BY NAME SELECT ? AS run_id, * FROM _t', [run["run_id"]])
        con.unregister("_t")
    con.execute("COMMIT")
    con.close()


def partner_history(path: Path, before: str, partners: list[str], periods: int = 5) -> list[dict]:
    """The grain rows of the latest recorded run of each (period, partner) for the ``periods``
    periods before ``before``: what the report's trend is drawn from. Read-only, so a report
    never creates or locks a warehouse it only looks at; an empty or older warehouse gives []."""
    if not path.exists() or not partners:
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        has = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name IN ('runs', 'reconciliation')"
        ).fetchone()[0]
        if has < 2:
            return []
        cur = con.execute(
            """
            WITH latest AS (
              SELECT DISTINCT r.period, g.partner, r.run_id FROM runs r
              JOIN reconciliation g ON g.run_id = r.run_id
              WHERE r.period < ? AND list_contains(?, g.partner)
              QUALIFY row_number() OVER (PARTITION BY r.period, g.partner
                                         ORDER BY r.started_at DESC, r.run_id DESC) = 1),
            recent AS (SELECT DISTINCT period FROM latest ORDER BY period DESC LIMIT ?)
            SELECT g.period, g.partner, g.currency, g.type, g.expected_share,
                   g.reported_share, g.amount
            FROM reconciliation g JOIN latest l
              ON g.run_id = l.run_id AND g.partner = l.partner AND g.period = l.period
            WHERE l.period IN (SELECT period FROM recent)
            ORDER BY g.period, g.partner, g.discrepancy_id""",
            [before, partners, periods],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()
