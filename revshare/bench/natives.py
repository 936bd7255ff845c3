"""Where the native files of one generated month are, for the bench's two references.

The references read the files exactly where ``revshare generate`` (and each cloud) puts them,
without the connectors: a team without this product would point its script at the same
folders. Only the layouts the generator writes are handled (local files, one period); the
connectors remain the readers of record.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from revshare.config import Config, Settings, load_config
from revshare.periods import Period

#: Connector type -> the format key the references switch on.
FORMATS = {
    "aws_cur2": "aws",
    "gcp_billing": "gcp",
    "azure_cost": "azure",
    "snowflake_usage": "snowflake",
}


@dataclass(frozen=True)
class Native:
    partner: str
    format: str  # aws | gcp | azure | snowflake
    files: tuple[Path, ...]
    rates: tuple[Path, ...] = ()  # snowflake: the rate sheet priced Cortex credits with


def locate(config: Config, period: Period, data_dir: Path) -> list[Native]:
    """The billing files of ``period`` per partner with billing, in config order
    (statement-only partners have nothing to read)."""
    out = []
    for pid, partner in config.partners.items():
        src = partner.billing
        if src is None:
            continue
        fmt = FORMATS.get(src.type)
        if fmt is None:
            raise ValueError(f"{pid}: the bench references do not read {src.type}")
        s = src.connector_settings()
        root = data_dir / s["path"]
        out.append(_FINDERS[fmt](pid, root, period, s))
    return out


def _aws(pid: str, root: Path, period: Period, s: dict) -> Native:
    name = s["export_name"]
    manifest = root / name / "metadata" / f"BILLING_PERIOD={period}" / f"{name}-Manifest.json"
    uris = json.loads(manifest.read_text())["dataFiles"]
    marker = f"{name}/data/"
    files = tuple(root / u[u.index(marker) :] for u in uris)  # s3://bucket/prefix/<rel>
    return Native(pid, "aws", files)


def _gcp(pid: str, root: Path, period: Period, s: dict) -> Native:
    part = root / s["table"] / f"invoice_month={period.compact}"
    return Native(pid, "gcp", tuple(sorted(part.glob("*.json.gz"))))


def _azure(pid: str, root: Path, period: Period, s: dict) -> Native:
    last = period.end - timedelta(days=1)  # Azure names the run folder by its last day
    rng = f"{period.start:%Y%m%d}-{last:%Y%m%d}"
    runs = sorted((root / s["export_name"] / rng).glob("*/*/manifest.json"))
    if not runs:
        raise FileNotFoundError(f"{pid}: no export run under {root / s['export_name'] / rng}")
    return Native(pid, "azure", tuple(sorted(runs[-1].parent.glob("*.csv.gz"))))


def _snowflake(pid: str, root: Path, period: Period, s: dict) -> Native:
    base = root / str(period)
    return Native(
        pid,
        "snowflake",
        tuple(sorted((base / "CORTEX_FUNCTIONS_USAGE_HISTORY").glob("*.parquet"))),
        tuple(sorted((base / "RATE_SHEET_DAILY").glob("*.parquet"))),
    )


_FINDERS = {"aws": _aws, "gcp": _gcp, "azure": _azure, "snowflake": _snowflake}


def statement_files(config: Config, period: Period, data_dir: Path) -> dict[str, list[Path]]:
    """Each partner's statement files for ``period`` (every revision; CSV or JSON)."""
    out = {}
    for pid, partner in config.partners.items():
        if partner.statement is None:
            continue
        folder = data_dir / partner.statement.connector_settings()["path"] / str(period)
        out[pid] = sorted(p for p in folder.glob("*") if p.suffix in (".csv", ".json"))
    return out


def reference_main(
    doc: str, compute: Callable[[Config, Period, Path], dict], argv: list[str] | None
) -> None:
    """The command line both references share: ``--data DIR --period P --out FILE``; writes
    ``compute``'s result as JSON, with the seconds it took unless it timed itself."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--period", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    config = load_config(Settings().config_dir)
    t0 = time.perf_counter()
    result = compute(config, Period.parse(a.period), a.data)
    result.setdefault("seconds", time.perf_counter() - t0)
    a.out.write_text(json.dumps(result, indent=1))
