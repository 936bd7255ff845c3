"""The stages of a run, as plain functions the flows call: extract, normalize, reconcile.

Connectors are passed in (duck-typed), never imported, so the core stays free of cloud SDKs.
Outputs are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb

from revshare.catalog import mapped_sql, register_rules
from revshare.config import PartnerCatalog
from revshare.db import connect
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.sqlutil import lit
from revshare.store import Snapshot, land


class ConnectorLike(Protocol):
    source_name: str

    def fetch(self, period: Period, staging: Path) -> Any: ...
    def normalize_sql(self, ctx: Any) -> str: ...


@dataclass(frozen=True)
class Normalized:
    path: Path
    rows: int


def extract(connector: ConnectorLike, period: Period, landing_root: Path) -> Snapshot:
    """Fetch the newest complete delivery and land it as an immutable snapshot.

    Remote connectors download into a staging folder inside the landing root (same disk, so
    landing is a local copy) that is removed whatever happens."""
    landing_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=landing_root))
    try:
        delivery = connector.fetch(period, staging)
        return land(
            delivery.files, landing_root, source=connector.source_name, version=delivery.version
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def normalize(
    connector: ConnectorLike,
    ctx: Any,
    out: Path,
    *,
    catalog: PartnerCatalog | None = None,
    temp_dir: Path | None = None,
) -> Normalized:
    """Run the connector's SELECT (through the catalog for billing) into one Parquet file."""
    con = connect(temp_dir=temp_dir)
    sql = connector.normalize_sql(ctx)
    if catalog is not None:
        register_rules(con, catalog)
        sql = mapped_sql(sql, catalog)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        con.execute(f"COPY ({sql}) TO {lit(tmp)} (FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(
            connector.source_name, f"could not normalize: {_first_line(exc)}"
        ) from exc
    os.replace(tmp, out)
    rows = con.execute(f"SELECT count(*) FROM read_parquet({lit(out)})").fetchone()[0]
    return Normalized(out, rows)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def snapshot_context(ctx_type: type, partner: str, period: Period, snap: Snapshot) -> Any:
    """Build the connector's NormalizeContext for a landed snapshot."""
    return ctx_type(partner, period, snap.id, snap.dir, snap.files)
