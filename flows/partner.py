"""One partner's month: extract, normalize and validate its sources, then reconcile.

Kept apart from the flow so the flow only orders partners and publishes. ``process_partner``
takes and returns plain values (paths, pydantic models, dataclasses), so a task runner can
run partners side by side (docs/scaling.md).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connectors import build_connector
from connectors.base import Connector, NormalizeContext
from flows import extraction, pushdown, validation
from flows.credentials import block_credentials
from revshare import ledger_reads, statement_only
from revshare.config import Config, Settings
from revshare.db import connect
from revshare.errors import SourceError
from revshare.outcome import PartnerOutcome, SourceOutcome
from revshare.periods import Period
from revshare.reconcile import PartnerResult, reconcile_partner
from revshare.runs import RunPaths
from revshare.schema import BILLING_SCHEMA
from revshare.sqlutil import lit
from revshare.stages import Normalized, decode, normalize
from revshare.store import Snapshot, open_snapshot
from revshare.timing import stage


@task(
    name="normalize",
    cache_policy=NO_CACHE,
    timeout_seconds=extraction.NORMALIZE_TIMEOUT,
)
def normalize_task(
    connector: Connector, ctx: NormalizeContext, out: Path, config: Config, temp_dir: Path
) -> Normalized:
    billing = connector.capabilities.produces == "billing"
    catalog = config.catalog.partners.get(ctx.partner_id) if billing else None
    if billing and catalog is None:
        raise connector.error(f"no catalog entry for {ctx.partner_id} to map its billing SKUs")
    return normalize(connector, ctx, out, catalog=catalog, temp_dir=temp_dir)


def _q(config: Config) -> Any:
    """Pass the config to a task as it is: Prefect would otherwise walk and rebuild every
    pydantic model inside it, which is slow and breaks models with derived properties."""
    return quote(config)


#: The reconciliation's cap. Its joins and the lines files' sort took a 10M-line partner to
#: 1.21 to 1.39 GB in a process of its own under the default 1 GB; under this, 0.86 to
#: 0.89 GB, for 0 to 1.0 s more a partner (spilled).
RECONCILE_MEMORY = "512MB"


@task(name="reconcile", cache_policy=NO_CACHE)
def reconcile_task(
    config: Config, partner: str, period: Period, paths: RunPaths, prev_billing: Path | None
) -> PartnerResult:
    con = connect(temp_dir=paths.work / "spill", memory_limit=RECONCILE_MEMORY)
    for view, kind in (("billing", "billing"), ("statements", "statement")):
        path = lit(paths.canonical(partner, kind))
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({path})")
    if prev_billing is not None:
        con.execute(f"CREATE VIEW prev_billing AS SELECT * FROM read_parquet({lit(prev_billing)})")
    else:
        con.register("_empty", BILLING_SCHEMA.empty_table())
        con.execute("CREATE VIEW prev_billing AS SELECT * FROM _empty")
    return reconcile_partner(con, config, partner, period, paths.partner_results(partner))


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
    decoded = paths.work / "decoded" / pid / kind
    try:
        if source is None:
            raise SourceError(f"{pid}/{kind}", "no source configured")
        with block_credentials(source, f"{pid}/{kind}") as resolved:
            connector = build_connector(resolved, settings.data_dir, f"{pid}/{kind}")
            with stage("extract", partner=pid, kind=kind):
                snap = _snapshot(pid, kind, source, connector, period, settings, pull)
        so.snapshot_id = snap.id
        ctx = NormalizeContext(pid, period, snap.id, snap.dir, snap.files)
        with stage("decode", partner=pid, kind=kind):
            ctx = decode(connector, ctx, decoded, temp_dir=paths.work / "spill")
        with stage("validate_native", partner=pid, kind=kind):
            validation.check_native(so, connector, ctx, paths)  # raises SourceError if blocked
        with stage("normalize", partner=pid, kind=kind):
            norm = normalize_task(
                connector, ctx, paths.canonical(pid, kind), _q(config), paths.work / "spill"
            )
        so.rows = norm.rows
        so.count(norm.accounting)  # rows read = normalized + rejected (revshare.stages.account)
        params = _params(pid, period, config, connector)
        with stage("validate_canonical", partner=pid, kind=kind):
            validation.check_canonical(so, norm.path, params, paths)  # raises if blocked
        return connector, snap
    except SourceError as exc:
        so.status, so.reason = "quarantined", str(exc)
        outcome.quarantine(str(exc))
        get_run_logger().warning("quarantined %s", exc)
        return None
    finally:
        shutil.rmtree(decoded, ignore_errors=True)  # derived from landing: never kept


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
        sid = ledger_reads.last_snapshot(settings.warehouse_path, str(period), pid, kind)
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
    prev = ledger_reads.first_billing_snapshot(
        settings.warehouse_path, str(period), pid, statement.id
    )
    connector, current = billing
    if prev is None or prev == current.id:
        return None
    root = settings.landing_dir / pid / "billing" / str(period)
    snap = open_snapshot(root, prev)
    ctx = NormalizeContext(pid, period, snap.id, snap.dir, snap.files)
    return normalize_task(
        connector, ctx, paths.canonical(pid, "prev_billing"), _q(config), paths.work / "spill"
    ).path


@dataclass
class PartnerRun:
    """What one partner's month came to: its outcome, and its result if it reconciled."""

    outcome: PartnerOutcome
    result: PartnerResult | None


@task(name="check-statement-only", cache_policy=NO_CACHE)
def statement_only_task(
    config: Config, partner: str, period: Period, paths: RunPaths, probe: bool, warehouse: Path
) -> PartnerResult:
    con = connect(temp_dir=paths.work / "spill")
    con.execute(
        "CREATE VIEW statements AS SELECT * FROM read_parquet("
        f"{lit(paths.canonical(partner, 'statement'))})"
    )
    if probe:
        path = lit(paths.canonical(partner, "probe"))
        con.execute(f"CREATE VIEW probe AS SELECT * FROM read_parquet({path})")
    prev = str(period.prev())
    rows = ledger_reads.reported_history(warehouse, prev, partner)
    history = None if rows is None else statement_only.History(prev, rows)
    out = paths.partner_results(partner)
    return statement_only.check_partner(
        con, config, partner, period, history=history, probe=probe, out=out
    )


def _statement_only(
    pid: str,
    config: Config,
    settings: Settings,
    period: Period,
    paths: RunPaths,
    pull: extraction.Pull,
    outcome: PartnerOutcome,
) -> PartnerRun:
    """No billing export: the statement against itself, the contract, the licensed models,
    the partner's history and, when configured, the licensor's own usage through it."""
    statement = _source(pid, "statement", config, settings, period, paths, outcome, pull)
    probe = None
    if config.partners[pid].probe is not None:
        probe = _source(pid, "probe", config, settings, period, paths, outcome, pull)
    if statement is None or outcome.status == "quarantined":
        return PartnerRun(outcome, None)
    with stage("reconcile", partner=pid):
        result = statement_only_task(
            _q(config), pid, period, paths, probe is not None, settings.warehouse_path
        )
    get_run_logger().info("%s checked (statement only)", pid)
    return PartnerRun(outcome, result)


def process_partner(
    pid: str,
    config: Config,
    settings: Settings,
    period: Period,
    paths: RunPaths,
    pull: extraction.Pull,
) -> PartnerRun:
    outcome = PartnerOutcome(pid, config.partners[pid].name)
    if config.partners[pid].statement_only:
        return _statement_only(pid, config, settings, period, paths, pull, outcome)
    billing = _source(pid, "billing", config, settings, period, paths, outcome, pull)
    statement = _source(pid, "statement", config, settings, period, paths, outcome, pull)
    if billing is not None and statement is not None:
        with stage("validate_completeness", partner=pid):
            validation.check_completeness(outcome, paths)  # warn unless config blocks
    if billing is None or statement is None or outcome.status == "quarantined":
        return PartnerRun(outcome, None)
    prev = _previous_billing(pid, period, settings, paths, config, billing, statement[1])
    with stage("reconcile", partner=pid):
        result = reconcile_task(_q(config), pid, period, paths, prev)
    if pushdown.wanted(billing):  # summed in the warehouse: pull the lines behind now
        result = pushdown.lines_behind_task(
            billing[0], billing[1], result, _q(config), settings, period, paths
        )
    get_run_logger().info("%s reconciled", pid)
    return PartnerRun(outcome, result)
