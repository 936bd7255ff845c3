"""Load: a 12-period x 4-partner backfill, end to end.

Twelve consecutive months are written with `revshare generate` (small months: the point is
the number of periods and partners, not lines) and reconciled by the backfill flow.
Every period must complete with all four partners reconciled and every planted discrepancy
found, oldest first; the wall time is printed (see docs/operations.md)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from revshare import ledger_reads
from revshare.config import Settings

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PERIODS = [f"2026-{m:02d}" for m in range(1, 13)]
ROWS = 80


def test_backfill_twelve_periods_four_partners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api
) -> None:
    from revshare.cli import app

    data, config = tmp_path / "data", tmp_path / "config"
    # The example config has month-end FX rates from 2026-08 on; earlier months get 2026-08's
    # rates (test data: the load, not the rates, is under test).
    shutil.copytree(REPO / "config", config)
    fx = yaml.safe_load((config / "fx_rates.yaml").read_text())
    for period in PERIODS:
        fx["month_end"].setdefault(period, fx["month_end"]["2026-08"])
    (config / "fx_rates.yaml").write_text(yaml.safe_dump(fx))
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(config))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(data))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REVSHARE_NOTIFICATIONS", raising=False)
    cli = CliRunner()
    clouds = ["aws", "gcp", "azure", "snowflake"]  # the four partners with a billing export
    assert len(PERIODS) == 12
    planted: dict[str, int] = {}
    for period in PERIODS:
        args = ["generate", "--period", period, "--out", str(data), "--rows", str(ROWS)]
        res = cli.invoke(app, args)
        assert res.exit_code == 0, res.output
        truth = json.loads((data / "ground_truth.json").read_text())  # this month's
        assert truth["period"] == period
        planted[period] = len(
            [
                d
                for d in truth["discrepancies"]
                if d["phase"] == "initial" and d["partner"] in clouds
            ]
        )

    # The backfill flow itself (what `revshare backfill` and the deployment run), in process:
    # CliRunner would hand Prefect's log handler a stream it closes afterwards.
    from flows.schedule import backfill

    t0 = time.monotonic()
    rows = backfill(start=PERIODS[0], end=PERIODS[-1], partners=clouds)
    wall = time.monotonic() - t0
    print(f"\nbackfill of {len(PERIODS)} periods x 4 partners ({ROWS} lines): {wall:.1f} s")
    assert [(r["period"], r["status"]) for r in rows] == [(p, "completed") for p in PERIODS]

    runs = list(reversed(ledger_reads.list_runs(Settings().warehouse_path, limit=100)))
    assert [r["period"] for r in runs] == PERIODS  # one run per period, oldest first
    for r in runs:
        assert r["status"] == "completed", r
        assert r["partners"] == clouds
        assert Path(r["report_path"]).is_file()
        shown = ledger_reads.show_run(Settings().warehouse_path, r["run_id"])
        assert {s["status"] for s in shown["sources"]} == {"ok"}
        found = sum(n for _, n in shown["discrepancies"])
        assert found == planted[r["period"]] > 0, (r["period"], shown["discrepancies"])
