"""Warehouse pushdown for the BigQuery billing export, against bqemulator, through the flow.

The generator's Google Cloud month (with its planted discrepancies) is loaded into the
emulator's export table; the flow reconciles the partner twice from BigQuery, once pulling
every row and once with ``pushdown: true`` (the month summed in BigQuery, then only the rows
behind the discrepancies). The reconciliation and discrepancy files must be equal but for the
billing snapshot, the lines behind equal but for their lineage (they come from another pull),
and the pushdown must pull fewer rows. The counts each way are printed (``-s``) for
docs/scaling.md.

What this cannot prove: the emulator is DuckDB underneath, so its FLOAT64 text is the shortest
round-trip one (as the full path reads) and its BIGNUMERIC keeps 9 to 10 decimal places (the
generator's money has 8). It proves the grain, the layout and the flow; real BigQuery's
FLOAT64 text is the assumption ``connectors/gcp_billing/grain.py`` names.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period
from tests.cloud.pushdown_checks import assert_pushdown_equals_full_pull, config_with_billing
from tests.cloud.test_gcp_bigquery import (  # noqa: F401 (emulator: a fixture)
    DATASET,
    PROJECT,
    TABLE,
    Emulator,
    _create,
    _load,
    emulator,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
#: Rows the generator writes in all (the Google Cloud month holds about that many).
ROWS = 10_000


@pytest.fixture(scope="module")
def month(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[Emulator, Path]:
    data = tmp_path_factory.mktemp("data")
    generate(load_config(REPO / "config"), Period.parse(PERIOD), data, rows=ROWS)
    export = data / "gcp" / "billing_export" / TABLE
    _create(emulator, TABLE)
    _load(emulator, TABLE, sorted(export.glob("invoice_month=*/*.json.gz")))
    return emulator, data


def _config(tmp: Path, url: str, pushdown: bool) -> Path:
    """The repository's config with Google Cloud's billing queried from the emulator."""
    billing = {
        "type": "gcp_billing",
        "project": PROJECT,
        "dataset": DATASET,
        "table": TABLE,
        "api_endpoint": url,
    }
    return config_with_billing(tmp, "gcp", billing, pushdown)


def _landed_rows(home: Path, kind: str) -> int:
    """Export records landed under ``kind`` (billing, or billing_lines)."""
    return _records((home / "landing" / "gcp" / kind / PERIOD).glob("*/**/*.json.gz"))


def _records(files: Iterable[Path]) -> int:
    n = 0
    for f in files:
        with gzip.open(f, "rb") as fh:
            n += sum(1 for _ in fh)
    return n


def test_pushdown_equals_full_pull(
    month: tuple[Emulator, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api,
) -> None:
    emu, data = month
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(data))
    from flows.reconcile import reconcile_period

    runs, checks = {}, {}
    for pushdown in (False, True):
        monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(_config(tmp_path, emu.url, pushdown)))
        monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / f"home-{pushdown}"))
        summary = reconcile_period(period=PERIOD, partners=["gcp"], dry_run=True)
        assert summary["status"] == "completed", summary
        runs[pushdown] = Path(summary["report"]).parent / "results"
        manifest = json.loads((runs[pushdown].parent / "run.json").read_text())
        (checks[pushdown],) = [v for v in manifest["validation"] if v["source"] == "gcp/billing"]
    # Validated like any delivery, with the same outcome: passed, the one warning the
    # generator plants (late rows), and LINE_COUNT not taken for schema drift.
    for v in checks.values():
        assert v["success"] and v["blocking"] == 0 and not v["errored"], v["reason"]
        assert [f["check"] for f in v["failures"]] == ["late_rows"], v["reason"]

    assert_pushdown_equals_full_pull(runs[False], runs[True], data, "gcp", same_order=False)

    full_rows = _landed_rows(tmp_path / "home-False", "billing")
    grain = _landed_rows(tmp_path / "home-True", "billing")
    behind = _landed_rows(tmp_path / "home-True", "billing_lines")
    print(f"\nexport rows pulled: full {full_rows}; pushdown grain {grain} + lines behind "
          f"{behind} = {grain + behind} ({(grain + behind) / full_rows:.0%})")  # fmt: skip
    month_dir = data / "gcp" / "billing_export" / TABLE / f"invoice_month={PERIOD.replace('-', '')}"
    assert full_rows == _records(month_dir.glob("*.json.gz"))
    assert 0 < grain < full_rows and 0 < behind < full_rows
    assert grain + behind < full_rows
