"""Wrapper flows for the schedule: ``nightly`` and ``backfill``.

Each period is one ``reconcile-period`` subflow run, so the UI shows (and finance can rerun)
every period on its own, and one period failing never stops the next one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.locks import live_runs, sweep_interrupted
from flows.reconcile import reconcile_period
from revshare import retention
from revshare.config import Settings
from revshare.periods import Period

#: Backfills longer than this are refused: a typo in a year should not queue ten years.
MAX_BACKFILL = 36


def periods_between(start: str, end: str) -> list[Period]:
    """Every period from ``start`` to ``end`` inclusive."""
    a, b = Period.parse(start), Period.parse(end)
    if b < a:
        raise ValueError(f"backfill end {b} is before its start {a}")
    out = [a]
    while out[-1] < b:
        out.append(out[-1].next())
    if len(out) > MAX_BACKFILL:
        raise ValueError(f"{len(out)} periods; at most {MAX_BACKFILL} per backfill")
    return out


def nightly_periods(today: date, final_after_days: int) -> tuple[Period, Period | None]:
    """The open period (month to date) and, until its data is final, the previous one.

    A period's billing keeps changing for a while after it ends (late rows, statements
    arriving): it is reconciled every night until ``final_after_days`` days into the next."""
    open_period = Period(today.year, today.month)
    prev = open_period.prev()
    final = prev.end.date() + timedelta(days=final_after_days)
    return open_period, (prev if today < final else None)


def _run(period: Period, **kw: Any) -> dict[str, Any]:
    state = reconcile_period(period=str(period), return_state=True, **kw)
    result = state.result(raise_on_failure=False)
    row = {"period": str(period), "state": state.type.value, "status": "failed", "report": ""}
    if isinstance(result, dict):
        row |= {"status": result["status"], "report": result["report"], "run_id": result["run_id"]}
    else:
        row["error"] = str(result)[:300]
    return row


def prune(dry_run: bool = False) -> retention.Plan:
    """Apply the retention policy (``config/retention.yaml``) to ``REVSHARE_HOME``: first mark
    killed runs ``interrupted``, then remove what no kept run needs. Runs in progress (holding
    a lock) and everything they work on are left alone."""
    settings = Settings()
    sweep_interrupted(settings.home, settings.warehouse_path)
    plan = retention.plan_home(settings, live_runs(settings.home))
    if not dry_run:
        retention.apply(plan)
    return plan


@flow(name="revshare-nightly")
def nightly(
    partners: list[str] | None = None,
    today: str | None = None,
    final_after_days: int = 10,
    prune_after: bool = True,
) -> list[dict[str, Any]]:
    """Reconcile the open period month to date and the previous period until it is final,
    then apply the retention policy (``prune_after``).

    Ends Failed only if the previous period's run failed: the open period usually has no
    statement yet, so its partners are quarantined and that is expected (a warning row in
    the ``nightly`` artifact, no notification). A failed prune is logged, never fails the
    night: the reconciliation it follows is what matters."""
    day = date.fromisoformat(today) if today else datetime.now(UTC).date()
    open_period, closing = nightly_periods(day, final_after_days)
    rows = [_run(open_period, partners=partners, notify=False) | {"role": "month to date"}]
    if closing is not None:
        rows.append(_run(closing, partners=partners) | {"role": "closing"})
    create_table_artifact(rows, key="nightly", description=f"Nightly {day}")
    if prune_after:
        try:
            plan = prune()
            get_run_logger().info(
                "retention: removed %d run folder(s), %d partial run(s), %d snapshot(s), "
                "%d temp leftover(s)",
                len(plan.runs), len(plan.partials), len(plan.snapshots), len(plan.temp),
            )  # fmt: skip
        except Exception as exc:  # logged; disk can wait a night
            get_run_logger().warning("retention failed: %s: %s", type(exc).__name__, exc)
    failed = [r for r in rows if r["role"] == "closing" and r["state"] != "COMPLETED"]
    if failed:
        raise RuntimeError(f"period {failed[0]['period']} failed: {failed[0].get('error')}")
    get_run_logger().info("nightly %s: %s", day, ", ".join(r["period"] for r in rows))
    return rows


@flow(name="revshare-backfill")
def backfill(
    start: str,
    end: str,
    partners: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Reconcile every period from ``start`` to ``end`` (YYYY-MM, inclusive), oldest first
    so each period's trend sees the ones before it. Runs them all; ends Failed if any
    period failed, naming them."""
    rows = [
        _run(p, partners=partners, force=force, dry_run=dry_run)
        for p in periods_between(start, end)
    ]
    create_table_artifact(rows, key="backfill", description=f"Backfill {start}..{end}")
    failed = [r["period"] for r in rows if r["state"] != "COMPLETED"]
    if failed:
        raise RuntimeError(f"backfill: {len(failed)} period(s) failed: {', '.join(failed)}")
    return rows
