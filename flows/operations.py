"""After a run is published: Prefect artifacts, the ledger's run details, notifications.

Kept out of ``flows/reconcile.py`` so the flow reads as the pipeline it is. Everything here
is about telling people what happened; none of it changes a figure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows.locks import sweep_interrupted
from revshare import ledger, ledger_reads
from revshare import notify as notify_mod
from revshare.config import Settings
from revshare.outcome import PartnerOutcome
from revshare.runs import RunPaths
from revshare.store import write_atomically


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:
        return None


def _artifacts(summary: dict[str, Any], paths: RunPaths, run_id: str) -> None:
    """Summary (markdown), discrepancies (table), the report (link) and, for a partial run,
    a warning: the flow still ends Completed, the warning is what the UI shows for it."""
    uri = paths.report.resolve().as_uri()
    markdown = summary["markdown"] + f"\n\nReport: [{paths.report.name}]({uri})"
    create_markdown_artifact(markdown, key="reconciliation-summary", description=f"Run {run_id}")
    create_link_artifact(
        uri,
        link_text=f"Report {run_id}",
        key="reconciliation-report",
        description=str(paths.report),
    )
    if summary["discrepancy_rows"]:
        create_table_artifact(
            summary["discrepancy_rows"],
            key="discrepancies",
            description=f"Run {run_id}: discrepancies by money at stake ({uri})",
        )
    if summary["status"] == "partial":
        lines = ["# Warning: not every partner was reconciled", ""]
        lines += [
            f"- **{p['partner']}**: {p['reason']}"
            for p in summary["partners"]
            if p["status"] != "reconciled"
        ]
        lines += ["", f"The other partners were reconciled. Report: [{paths.report.name}]({uri})"]
        create_markdown_artifact(
            "\n".join(lines), key="reconciliation-warning", description=f"Run {run_id}: partial"
        )


def _changes(
    settings: Settings, paths: RunPaths, period: str, run_id: str, config: notify_mod.NotifyConfig
) -> list[dict[str, Any]]:
    """Material discrepancies new or changed since the previous run of each (period, partner)."""
    path = paths.results / "discrepancies.parquet"
    if not path.exists():
        return []
    rows = pq.read_table(path).to_pylist()
    out = []
    for partner in sorted({r["partner"] for r in rows}):
        prev = ledger_reads.previous_discrepancies(settings.warehouse_path, period, partner, run_id)
        mine = [r for r in rows if r["partner"] == partner]
        out += notify_mod.material_changes(mine, prev, config)
    return out


def after_publish(
    summary: dict[str, Any],
    *,
    paths: RunPaths,
    settings: Settings,
    period: str,
    params: dict[str, Any],
    outcomes: list[PartnerOutcome],
    started: datetime,
    timings: dict[str, float],
    dry_run: bool,
    notify: bool = True,
) -> dict[str, Any]:
    """Publish artifacts, notify, and record the run's details (ledger, ``details.json``)."""
    log = get_run_logger()
    run_id = summary["run_id"]
    _artifacts(summary, paths, run_id)
    cfg = notify_mod.load_notify_config(settings.config_dir)
    sent: list[dict[str, str]] = []
    if cfg.enabled and notify:
        failures = [
            {"partner": o.partner, "status": o.status, "reason": o.reason}
            for o in outcomes
            if o.status != "reconciled"
        ]
        run = {"run_id": run_id, "period": period, "status": summary["status"]}
        run["report"] = summary["report"]
        try:
            changes = _changes(settings, paths, period, run_id, cfg)
            sent = notify_mod.notify_run(cfg, run, changes, failures)
        except Exception as exc:  # telling people must never fail a reconciliation
            log.warning("notifications not sent: %s", type(exc).__name__)
            sent = [{"channel": "all", "status": "failed", "error": type(exc).__name__}]
        for s in sent:
            log.info("notification %s: %s", s["channel"], s["status"])
    details = {
        "run_id": run_id,
        "params": params,
        "flow_run_id": _flow_run_id(),
        "duration_seconds": round((datetime.now(UTC) - started).total_seconds(), 3),
        "timings": timings,
        "partners": [
            {
                "partner": o.partner,
                "status": o.status,
                "reason": o.reason,
                "snapshots": {s.kind: s.snapshot_id for s in o.sources},
            }
            for o in outcomes
        ],
        "notifications": sent,
        "report": str(paths.report),
        "status": summary["status"],
    }
    _write_json(paths.root / "details.json", details)
    if not dry_run:
        ledger.record_details(settings.warehouse_path, run_id, details)
    return details


def run_started(
    settings: Settings,
    run_id: str,
    period: str,
    partners: list[str],
    started: datetime,
    dry_run: bool,
) -> None:
    """Bookkeeping once a run holds its locks: runs the ledger still shows ``running``
    whose process is gone become ``interrupted``; this run is recorded as ``running`` (not a
    dry run: it writes no ledger), replaced by its outcome when it publishes."""
    dead = sweep_interrupted(settings.home, settings.warehouse_path)
    if dead:
        get_run_logger().warning(
            "marked %d run(s) interrupted (killed before publishing): %s",
            len(dead),
            ", ".join(dead),
        )
    if not dry_run:
        ledger.record_start(settings.warehouse_path, run_id, period, partners, started)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1, default=str)))


def notify_crash(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow ``on_failure`` hook: a run that failed before publishing (a lock timeout, bad
    parameters, a crash) has no report to tell anyone; send a failure notification. A run
    that published (no partner reconciled) was already notified by ``after_publish``."""
    message = state.message or ""
    if "no partner could be reconciled" in message:
        return
    cfg = notify_mod.load_notify_config(Settings().config_dir)
    if not (cfg.enabled and cfg.on_failure):
        return
    params = getattr(flow_run, "parameters", {}) or {}
    run = {
        "run_id": f"flow run {flow_run.name}",
        "period": params.get("period") or "default period",
        "status": "failed",
        "report": None,
    }
    failures = [{"partner": "run", "reason": message}]
    notify_mod.deliver(cfg, *notify_mod.failure_message(run, failures))
