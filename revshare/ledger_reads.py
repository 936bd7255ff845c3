"""Reading the warehouse: the run ledger and the results recorded by ``revshare.ledger``.

Every function here opens the DuckDB file read-only (``_read``): partners run in several
processes at once (flows/runners.py), and DuckDB lets many processes read a file but only one
open it for writing, so a read never takes the writer's place nor creates a warehouse it only
looks at. An absent warehouse, or one written before a table existed, reads as empty. The
writes (and the schema) are in ``revshare.ledger``, which builds on the helpers here.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

T = TypeVar("T")

#: Run statuses: ``running`` is written when a run has taken its locks, replaced by the
#: outcome (completed, partial, failed) when it publishes; a ``running`` run whose locks are
#: gone (killed, crashed) is marked ``interrupted`` by the next run or by ``runs list``.
RUNNING, INTERRUPTED = "running", "interrupted"

#: How long to wait for another process's write to the warehouse file to finish. DuckDB
#: lets one process at a time open a database file for writing (readers are refused too while
#: it does); every ledger write is a short transaction, so waiting is the right answer.
WAIT_SECONDS = float(os.environ.get("REVSHARE_WAREHOUSE_WAIT_SECONDS", "120"))


def _retry_locked(open_fn: Callable[[], T]) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            return open_fn()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.1 + random.random() * 0.2)


def _read(path: Path) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection, or None when there is no warehouse yet."""
    if not path.exists():
        return None
    con = _retry_locked(lambda: duckdb.connect(str(path), read_only=True))
    con.execute("SET TimeZone = 'UTC'")
    return con


def _has(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
    return bool(con.execute(sql, [table]).fetchone()[0])


def _no_run(run_id: str) -> str:
    return f"no recorded run matches {run_id!r}"


def _resolve_run_id(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The one recorded run id that starts with ``run_id`` (a unique prefix is enough).
    Raises KeyError naming the prefix when none matches or several do (``show_run``,
    ``ledger.mark_run`` and the command line say the same)."""
    ids = [r[0] for r in con.execute(
        "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [run_id]
    ).fetchall()]  # fmt: skip
    if not ids:
        raise KeyError(_no_run(run_id))
    if len(ids) > 1:
        raise KeyError(f"{len(ids)} recorded runs match {run_id!r}: give more of the id")
    return ids[0]


def first_billing_snapshot(
    path: Path, period: str, partner: str, statement_snapshot: str
) -> str | None:
    """The billing snapshot of the earliest successful run that reconciled this statement.

    Read-only: partners may run in several processes at once (flows/runners.py), and DuckDB
    lets many processes read a file but only one open it for writing."""
    con = _read(path)
    if con is None or not _has(con, "run_sources"):
        if con is not None:
            con.close()
        return None
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


def last_snapshot(path: Path, period: str, partner: str, kind: str) -> str | None:
    """The snapshot of ``kind`` the latest recorded run of (period, partner) used, if ok."""
    con = _read(path)
    if con is None:
        return None
    try:
        row = con.execute(
            """SELECT s.snapshot_id FROM runs r JOIN run_sources s USING (run_id)
               WHERE r.period = ? AND s.partner = ? AND s.kind = ? AND s.status = 'ok'
                 AND s.snapshot_id IS NOT NULL
               ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1""",
            [period, partner, kind],
        ).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def partner_history(path: Path, before: str, partners: list[str], periods: int = 5) -> list[dict]:
    """The grain rows of the latest recorded run of each (period, partner) for the ``periods``
    periods before ``before``: what the report's trend is drawn from. Read-only, so a report
    never creates or locks a warehouse it only looks at; an empty or older warehouse gives []."""
    if not path.exists() or not partners:
        return []
    con = _retry_locked(lambda: duckdb.connect(str(path), read_only=True))
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


def list_runs(path: Path, period: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first: id, period, status, partners, times, duration, report."""
    con = _read(path)
    if con is None:
        return []
    try:
        details = _has(con, "run_details")
        join = "LEFT JOIN run_details d USING (run_id)" if details else ""
        dur = "d.duration_seconds" if details else "NULL"
        cur = con.execute(
            f"""SELECT r.run_id, r.period, r.status, r.partners, r.started_at, r.finished_at,
                       {dur} AS duration_seconds, r.report_path
                FROM runs r {join} WHERE ? IS NULL OR r.period = ?
                ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?""",
            [period, period, limit],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def show_run(path: Path, run_id: str) -> dict[str, Any]:
    """Everything the ledger holds on one run (a unique prefix of the id is enough).
    Raises KeyError when no recorded run, or more than one, matches (``_resolve_run_id``)."""
    con = _read(path)
    if con is None:
        raise KeyError(_no_run(run_id))
    try:
        rid = _resolve_run_id(con, run_id)
        cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [rid])
        names = [d[0] for d in cur.description]
        run = dict(zip(names, cur.fetchone(), strict=True))
        cur = con.execute(
            "SELECT partner, kind, source_type, snapshot_id, rows, status, reason "
            "FROM run_sources WHERE run_id = ? ORDER BY partner, kind",
            [rid],
        )
        names = [d[0] for d in cur.description]
        run["sources"] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if _has(con, "run_details"):
            row = con.execute(
                "SELECT params, flow_run_id, duration_seconds, timings, partners, notifications"
                " FROM run_details WHERE run_id = ?",
                [rid],
            ).fetchone()
            if row:
                run["params"] = json.loads(row[0])
                run["flow_run_id"] = row[1]
                run["duration_seconds"] = row[2]
                run["timings"] = json.loads(row[3])
                run["outcomes"] = json.loads(row[4])
                run["notifications"] = json.loads(row[5])
        if _has(con, "reconciliation"):
            run["discrepancies"] = con.execute(
                "SELECT partner, count(*) FROM reconciliation WHERE run_id = ? "
                "AND type <> 'matched' GROUP BY partner ORDER BY partner",
                [rid],
            ).fetchall()
        return run
    finally:
        con.close()


def running_runs(path: Path) -> list[dict[str, Any]]:
    """Runs the ledger still shows as ``running``: run id, period, partners."""
    con = _read(path)
    if con is None:
        return []
    try:
        rows = con.execute(
            "SELECT run_id, period, partners FROM runs WHERE status = ? ORDER BY run_id",
            [RUNNING],
        ).fetchall()
        return [{"run_id": r[0], "period": r[1], "partners": r[2] or []} for r in rows]
    finally:
        con.close()


def previous_discrepancies(
    path: Path, period: str, partner: str, before_run: str
) -> dict[str, dict[str, Any]] | None:
    """The discrepancies of the latest recorded run of (period, partner) other than
    ``before_run`` and started before it, by discrepancy id; None if there was no such run
    (then every discrepancy of this run is new)."""
    con = _read(path)
    if con is None or not _has(con, "reconciliation"):
        if con is not None:
            con.close()
        return None
    try:
        prev = con.execute(
            """SELECT DISTINCT r.run_id, r.started_at FROM runs r
               JOIN reconciliation g ON g.run_id = r.run_id
               WHERE r.period = ? AND g.partner = ? AND r.run_id <> ?
                 AND r.started_at <= coalesce(
                     (SELECT started_at FROM runs WHERE run_id = ?), now())
               ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1""",
            [period, partner, before_run, before_run],
        ).fetchone()
        if prev is None:
            return None
        cur = con.execute(
            "SELECT discrepancy_id, type, amount, currency FROM reconciliation "
            "WHERE run_id = ? AND partner = ? AND type <> 'matched'",
            [prev[0], partner],
        )
        return {r[0]: {"type": r[1], "amount": r[2], "currency": r[3]} for r in cur.fetchall()}
    finally:
        con.close()


def retention_inputs(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What retention decides from: every recorded run (id, period, status, marked) and every
    snapshot a run used (run id, partner, kind, period, snapshot id, and for a statement the
    billing snapshot it was first checked against: the restatement baseline)."""
    con = _read(path)
    if con is None:
        return [], []
    try:
        marks = _has(con, "run_marks")
        cur = con.execute(
            f"""SELECT r.run_id, r.period, r.status,
                       {"m.run_id IS NOT NULL" if marks else "false"} AS marked
                FROM runs r {"LEFT JOIN run_marks m USING (run_id)" if marks else ""}
                ORDER BY r.period, r.started_at, r.run_id"""
        )
        names = [d[0] for d in cur.description]
        runs = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        cur = con.execute(
            """
            WITH firsts AS (
              SELECT r.period, s.partner, s.snapshot_id AS statement, b.snapshot_id AS billing
              FROM runs r
              JOIN run_sources s ON s.run_id = r.run_id AND s.kind = 'statement'
              JOIN run_sources b ON b.run_id = r.run_id AND b.kind = 'billing'
                   AND b.partner = s.partner
              WHERE s.status = 'ok' AND b.status = 'ok'
              QUALIFY row_number() OVER (PARTITION BY r.period, s.partner, s.snapshot_id
                                         ORDER BY r.started_at, r.run_id) = 1)
            SELECT s.run_id, s.partner, s.kind, r.period, s.snapshot_id, f.billing AS baseline
            FROM run_sources s JOIN runs r USING (run_id)
            LEFT JOIN firsts f ON s.kind = 'statement' AND f.period = r.period
                 AND f.partner = s.partner AND f.statement = s.snapshot_id
            WHERE s.snapshot_id IS NOT NULL
            ORDER BY s.run_id, s.partner, s.kind"""
        )
        names = [d[0] for d in cur.description]
        return runs, [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def reported_history(path: Path, period: str, partner: str) -> list[dict[str, Any]] | None:
    """What ``partner`` reported per (model, unit) in its latest recorded run of ``period``,
    for the history checks of statement-only partners; None when that month was never
    recorded. Read-only, like ``partner_history``."""
    con = _read(path)
    if con is None:
        return None
    try:
        if not _has(con, "reconciliation"):
            return None
        cols = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'reconciliation'").fetchall()}  # fmt: skip
        grain_only = (
            "coalesce(g.check_name, 'arithmetic') = 'arithmetic'"
            if "check_name" in cols
            else "true"
        )
        # Revenue recomputed from quantity x unit price where the statement gave prices.
        priced = (
            "coalesce(g.computed_revenue, g.reported_revenue)"
            if "computed_revenue" in cols
            else "g.reported_revenue"
        )
        latest = con.execute(
            """SELECT r.run_id FROM runs r JOIN reconciliation g USING (run_id)
               WHERE r.period = ? AND g.partner = ?
               ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1""",
            [period, partner],
        ).fetchone()
        if latest is None:
            return None
        cur = con.execute(
            f"""SELECT g.model_id, g.unit, sum(g.reported_tokens) AS reported_tokens,
                  sum(g.reported_revenue) AS reported_revenue, sum({priced}) AS priced_revenue,
                  sum(g.reported_share) AS reported_share
                FROM reconciliation g
                WHERE g.run_id = ? AND g.partner = ? AND g.model_id IS NOT NULL
                  AND g.reported_tokens IS NOT NULL AND {grain_only}
                GROUP BY ALL ORDER BY ALL""",
            [latest[0], partner],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
