"""The reconciliation flow: extract -> normalize -> validate -> reconcile -> publish.

One partner's failure (a source that cannot be read or fails validation) quarantines that
partner only; the others still reconcile and the report says what is missing. Final state
policy: Completed when every partner reconciled; Completed with a ``reconciliation-warning``
artifact (status ``partial``) when some were quarantined; Failed when none could be.

Operations (docs/operations.md): the (period, partner) locks of ``flows/locks.py`` keep two
runs of the same partner-month from racing; extraction retries, timeouts, per-source
concurrency limits and the remote pull cache are in ``flows/extraction.py``; the ledger
details, artifacts and notifications after publishing are in ``flows/operations.py``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from flows import extraction, operations, validation
from flows.locks import partition_locks
from flows.publish_remote import publish_from_env
from flows.runners import run_partners
from revshare.config import Settings, load_config
from revshare.periods import Period
from revshare.publish import publish
from revshare.runs import RunPaths, new_run_id
from revshare.timing import record, stage


@flow(name="reconcile-period", on_failure=[operations.notify_crash])
def reconcile_period(
    period: str | None = None,
    partners: list[str] | None = None,
    dry_run: bool = False,
    sources: list[str] | None = None,
    force: bool = False,
    notify: bool = True,
) -> dict:
    """Reconcile ``period`` (YYYY-MM; default the last closed month, UTC) for ``partners``
    (default: all configured). ``sources`` (``billing``, ``statement`` or ``aws/billing``)
    limits which sources are extracted again, the others reuse the snapshot the last recorded
    run used; ``force`` pulls remote sources even if they were pulled recently. A dry run
    computes and reports but writes no ledger. ``notify=False`` sends no notifications (the
    nightly month-to-date run, which has no statements yet)."""
    log = get_run_logger()
    settings = Settings()
    config = load_config(settings.config_dir)
    p = Period.parse(period) if period else Period.parse(f"{datetime.now(UTC):%Y-%m}").prev()
    selected = partners or list(config.partners)
    unknown = sorted(set(selected) - set(config.partners))
    if unknown:
        raise ValueError(f"unknown partner(s): {', '.join(unknown)}")
    started = datetime.now(UTC)
    run_id = new_run_id(p, started)
    paths = RunPaths(settings.runs_dir / run_id, staged=True)  # renamed into place when done
    params = {"period": str(p), "partners": selected, "dry_run": dry_run}
    params |= {"sources": sources, "force": force}
    log.info(
        "run %s: period %s, partners %s%s",
        run_id,
        p,
        ", ".join(selected),
        " (dry run)" if dry_run else "",
    )
    pull = extraction.Pull(sources, force, extraction.defined_limits())
    timings: dict[str, float] = {}
    with partition_locks(settings.home, str(p), selected, run_id):
        timings["lock_wait"] = (datetime.now(UTC) - started).total_seconds()
        operations.run_started(settings, run_id, str(p), selected, started, dry_run)
        outcomes, results = [], []
        # In the flow's process, or fanned out to Dask workers (REVSHARE_TASK_RUNNER); the
        # runs come back in partner order either way (flows/runners.py).
        runs = run_partners(selected, config, settings, p, paths, pull)
        for pid, timed in zip(selected, runs, strict=True):
            outcomes.append(timed.run.outcome)
            if timed.run.result is not None:
                results.append(timed.run.result)
            timings[pid] = timed.seconds
        with stage("validate_docs"):
            validation.finish(outcomes, paths, run_id)  # Data Docs + data-quality artifacts
        t0 = time.monotonic()
        summary = publish(
            paths,
            run_id=run_id,
            period=p,
            partners=selected,
            outcomes=outcomes,
            results=results,
            config=config,
            started=started,
            warehouse=None if dry_run else settings.warehouse_path,
        )
        timings["publish"] = round(time.monotonic() - t0, 3)
        # Optional copy of the run folder to object storage (REVSHARE_PUBLISH_URI).
        publish_from_env(paths.root)
        operations.after_publish(
            summary,
            paths=paths,
            settings=settings,
            period=str(p),
            params=params,
            outcomes=outcomes,
            started=started,
            timings=timings,
            dry_run=dry_run,
            notify=notify,
        )
        record("publish", time.monotonic() - t0)  # report, results, ledger, notifications
    if not results:
        raise RuntimeError(f"no partner could be reconciled; see {paths.report}")
    return {k: v for k, v in summary.items() if k not in ("markdown", "discrepancy_rows")}
