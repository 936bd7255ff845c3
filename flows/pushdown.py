"""Warehouse pushdown in the flow: after reconciling a source that was summed in the warehouse,
pull the native rows behind the discrepancies and put the line detail back.

Chosen by the source's settings (``pushdown: true``) on a connector declaring
``Capabilities.pushdown``; the flow never asks which warehouse it is. The rows behind land as
their own immutable snapshot under ``<landing>/<partner>/billing_lines/<period>/``, so every
line in the dispute packet still names a snapshot, a file and a row (docs/scaling.md).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from connectors.base import Connector, NormalizeContext
from revshare import lines as line_files
from revshare import pushdown
from revshare.config import Config, Settings
from revshare.periods import Period
from revshare.reconcile import PartnerResult
from revshare.runs import RunPaths
from revshare.stages import normalize
from revshare.store import Snapshot, land

KIND = "billing_lines"


def _land_lines(
    connector: Connector, period: Period, landing: Path, keys: list[str]
) -> tuple[Snapshot, str]:
    landing.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=landing))
    try:
        delivery = connector.fetch_lines(period, staging, keys)
        snap = land(delivery.files, landing, source=connector.source_name, version=delivery.version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return snap, delivery.metadata.get("rows_pulled", "?")


@task(name="pushdown-lines", cache_policy=NO_CACHE)
def lines_behind_task(
    connector: Connector,
    snap: Snapshot,
    result: PartnerResult,
    config: Config,
    settings: Settings,
    period: Period,
    paths: RunPaths,
) -> PartnerResult:
    """``result`` of a pushdown reconciliation with native line counts and the native lines
    behind its discrepancies (pulled now, for the SKU keys involved only)."""
    log = get_run_logger()
    pid = result.partner
    keys = pushdown.sku_keys_behind(result)
    detail = None
    if keys:
        landing = settings.landing_dir / pid / KIND / str(period)
        lines, rows = _land_lines(connector, period, landing, keys)
        ctx = NormalizeContext(pid, period, lines.id, lines.dir, lines.files)
        out = paths.canonical(pid, KIND)
        catalog = config.catalog.partners[pid]
        detail = normalize(connector, ctx, out, catalog=catalog, temp_dir=paths.work / "spill").path
        log.info("%s: pulled %s rows behind %d SKU key(s)", pid, rows, len(keys))
    ctx = NormalizeContext(pid, period, snap.id, snap.dir, snap.files)
    return pushdown.refine(
        result,
        billing=paths.canonical(pid, "billing"),
        weights_sql=connector.line_weights_sql(ctx),
        detail=detail,
        statements=paths.canonical(pid, "statement"),
        categories=list(config.contract_for(pid, period).charge_categories),
        by_region=config.matching.for_partner(pid).by_region,
        lines_out=paths.partner_results(pid) / f"pushdown.{line_files.BEHIND}",
    )


def wanted(billing: tuple[Connector, Any] | None) -> bool:
    """True when the billing source reconciled from warehouse-side sums."""
    return billing is not None and billing[0].pushdown_enabled
