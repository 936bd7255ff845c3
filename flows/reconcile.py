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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connectors import build_connector
from connectors.base import Connector, NormalizeContext
from flows import extraction, operations, validation
from flows.credentials import block_credentials
from flows.locks import partition_locks
from flows.publish_remote import publish_from_env
from revshare import ledger
from revshare.config import Config, Settings, load_config
from revshare.db import connect
from revshare.errors import SourceError
from revshare.outcome import PartnerOutcome, SourceOutcome
from revshare.periods import Period
from revshare.publish import publish
from revshare.reconcile import PartnerResult, reconcile_partner
from revshare.runs import RunPaths, new_run_id
from revshare.schema import BILLING_SCHEMA
from revshare.sqlutil import lit
from revshare.stages import Normalized, normalize
from revshare.store import Snapshot, open_snapshot


@task(
    name="normalize",
    cache_policy=NO_CACHE,
    timeout_seconds=extraction.NORMALIZE_TIMEOUT,
)
def normalize_task(
    connector: Connector, ctx: NormalizeContext, out: Path, config: Config, temp_dir: Path
) -> Normalized:
    billing = connector.capabilities.produces == "billing"
    catalog = config.catalog.partners[ctx.partner_id] if billing else None
    return normalize(connector, ctx, out, catalog=catalog, temp_dir=temp_dir)


def _q(config: Config) -> Any:
    """Pass the config to a task as it is: Prefect would otherwise walk and rebuild every
    pydantic model inside it, which is slow and breaks models with derived properties."""
    return quote(config)


@task(name="reconcile", cache_policy=NO_CACHE)
def reconcile_task(
    config: Config, partner: str, period: Period, paths: RunPaths, prev_billing: Path | None
) -> PartnerResult:
    con = connect(temp_dir=paths.work / "spill")
    for view, kind in (("billing", "billing"), ("statements", "statement")):
        path = lit(paths.canonical(partner, kind))
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({path})")
    if prev_billing is not None:
        con.execute(f"CREATE VIEW prev_billing AS SELECT * FROM read_parquet({lit(prev_billing)})")
    else:
        con.register("_empty", BILLING_SCHEMA.empty_table())
        con.execute("CREATE VIEW prev_billing AS SELECT * FROM _empty")
    return reconcile_partner(con, config, partner, period)


def _params(partner: str, period: Period, config: Config, connector: Connector) -> dict:
    late = timedelta(days=max(connector.capabilities.late_days, 1))
    return {
        "partner_id": partner,
        "period_start": period.start,
        "period_end": period.end,
        "late_window_start": period.start - late,
        "model_ids": config.model_ids,
    }


def _source(
    pid: str,
    kind: str,
    config: Config,
    settings: Settings,
    period: Period,
    paths: RunPaths,
    outcome: PartnerOutcome,
    pull: extraction.Pull,
) -> tuple[Connector, Snapshot] | None:
    """Extract, normalize and validate one source; on failure, quarantine and return None."""
    source = getattr(config.partners[pid], kind)
    so = SourceOutcome(pid, kind, source.type if source else "none")
    outcome.sources.append(so)
    try:
        if source is None:
            raise SourceError(f"{pid}/{kind}", "no source configured")
        with block_credentials(source, f"{pid}/{kind}") as resolved:
            connector = build_connector(resolved, settings.data_dir, f"{pid}/{kind}")
            snap = _snapshot(pid, kind, source, connector, period, settings, pull)
        so.snapshot_id = snap.id
        ctx = NormalizeContext(pid, period, snap.id, snap.dir, snap.files)
        validation.check_native(so, connector, ctx, paths)  # raises SourceError if blocked
        norm = normalize_task(
            connector, ctx, paths.canonical(pid, kind), _q(config), paths.work / "spill"
        )
        so.rows = norm.rows
        params = _params(pid, period, config, connector)
        validation.check_canonical(so, norm.path, params, paths)  # raises SourceError if blocked
        return connector, snap
    except SourceError as exc:
        so.status, so.reason = "quarantined", str(exc)
        outcome.quarantine(str(exc))
        get_run_logger().warning("quarantined %s", exc)
        return None


def _snapshot(
    pid: str,
    kind: str,
    source: Any,
    connector: Connector,
    period: Period,
    settings: Settings,
    pull: extraction.Pull,
) -> Snapshot:
    """Land the source's delivery, or reuse a snapshot when pulling again is pointless.

    Not selected by ``sources``: the snapshot the last recorded run used. A remote source
    pulled within the cache window: that pull's snapshot (unless ``force``). Otherwise pull."""
    log = get_run_logger()
    landing = settings.landing_dir / pid / kind / str(period)
    if not extraction.wants_pull(pull.sources, pid, kind):
        sid = ledger.last_snapshot(settings.warehouse_path, str(period), pid, kind)
        if sid is not None and (landing / sid).is_dir():
            log.info("%s/%s: not selected, reusing snapshot %s", pid, kind, sid)
            return open_snapshot(landing, sid)
    remote = extraction.is_remote(source.connector_settings())
    key = extraction.settings_key(source.type, source.connector_settings())
    if remote and not pull.force:
        cached = extraction.cached_snapshot(landing, key)
        if cached is not None:
            log.info("%s/%s: pulled recently, reusing snapshot %s", pid, kind, cached.id)
            return cached
    limit = f"{extraction.LIMIT_PREFIX}{source.type}"
    snap = extraction.extract_task(
        connector, period, landing, limit if limit in pull.limits else None
    )
    if remote:
        extraction.remember_pull(landing, key, snap)
    return snap


def _previous_billing(
    pid: str,
    period: Period,
    settings: Settings,
    paths: RunPaths,
    config: Config,
    billing: tuple[Connector, Snapshot],
    statement: Snapshot,
) -> Path | None:
    """Re-read the billing snapshot this statement was first checked against, if it differs."""
    prev = ledger.first_billing_snapshot(settings.warehouse_path, str(period), pid, statement.id)
    connector, current = billing
    if prev is None or prev == current.id:
        return None
    root = settings.landing_dir / pid / "billing" / str(period)
    snap = open_snapshot(root, prev)
    ctx = NormalizeContext(pid, period, snap.id, snap.dir, snap.files)
    return normalize_task(
        connector, ctx, paths.canonical(pid, "prev_billing"), _q(config), paths.work / "spill"
    ).path


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
    paths = RunPaths(settings.runs_dir / run_id)
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
        outcomes, results = [], []
        for pid in selected:
            t0 = time.monotonic()
            outcome = PartnerOutcome(pid, config.partners[pid].name)
            outcomes.append(outcome)
            billing = _source(pid, "billing", config, settings, p, paths, outcome, pull)
            statement = _source(pid, "statement", config, settings, p, paths, outcome, pull)
            if billing is not None and statement is not None:
                validation.check_completeness(outcome, paths)  # warn unless config blocks
            if billing is not None and statement is not None and outcome.status != "quarantined":
                prev = _previous_billing(pid, p, settings, paths, config, billing, statement[1])
                results.append(reconcile_task(_q(config), pid, p, paths, prev))
                log.info("%s reconciled", pid)
            timings[pid] = round(time.monotonic() - t0, 3)
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
    if not results:
        raise RuntimeError(f"no partner could be reconciled; see {paths.report}")
    return {k: v for k, v in summary.items() if k not in ("markdown", "discrepancy_rows")}
