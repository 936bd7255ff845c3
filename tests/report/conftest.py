"""One real run history for the report tests: September and October 2026 generated and
reconciled through the Prefect flow, with hostile text planted in AWS's October statement id
(an HTML script and a spreadsheet formula), so every output is checked against it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period

REPO = Path(__file__).resolve().parents[2]
PLANTED = '=HYPERLINK("http://evil.example/x","AWS")<script>alert(1)</script>'


@dataclass(frozen=True)
class Runs:
    root: Path
    report: Path  # October's report
    run_dir: Path
    previous: Path  # September's report


def _plant(data: Path) -> None:
    for path in (data / "statements" / "aws" / "2026-10").glob("*.csv"):
        rows = list(csv.DictReader(path.open(newline="")))
        for r in rows:
            r["statement_id"] = PLANTED
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, prefect_api) -> Runs:
    root = tmp_path_factory.mktemp("report-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
        mp.setenv("REVSHARE_DATA_DIR", str(root / "data"))
        mp.setenv("REVSHARE_HOME", str(root / "home"))
        mp.delenv("REVSHARE_LOCALE", raising=False)
        from flows.reconcile import reconcile_period

        config = load_config(REPO / "config")
        reports = {}
        for period in ("2026-09", "2026-10"):
            generate(config, Period.parse(period), root / "data", rows=400)
            if period == "2026-10":
                _plant(root / "data")
            reports[period] = Path(reconcile_period(period=period)["report"])
    return Runs(root, reports["2026-10"], reports["2026-10"].parent, reports["2026-09"])
