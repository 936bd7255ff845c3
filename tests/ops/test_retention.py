"""Retention over 30 consecutive nightly runs (simulated dates), on the real flow.

The month-to-date export changes every few nights (a new delivery, so new snapshots), the
nightly prunes after each night with the example policy (config/retention.yaml: 3 runs per
period plus the latest reported one, marked runs, and the snapshots they use). Disk use is
measured after every night and must plateau; every kept report's snapshots must still exist,
and so must the restatement baseline of every kept statement. Then `revshare prune --dry-run`
lists (and leaves) a killed run's staging folder and an old landing leftover, and `revshare
prune` removes them."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revshare import ledger_reads, retention
from revshare.config import Settings, load_config
from revshare.generate import generate
from revshare.periods import Period

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
NIGHTS = 30
FIRST = date(2026, 11, 1)
ROWS = 60


def _deliver(data: Path, night: int) -> None:
    """October as delivered (final); November month to date, re-delivered every 5 nights."""
    config = load_config(REPO / "config")
    shutil.rmtree(data, ignore_errors=True)
    generate(config, Period(2026, 10), data, rows=ROWS, seed=7)
    generate(config, Period(2026, 11), data, rows=ROWS, seed=100 + night // 5)


def _snaps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if (p / "_SNAPSHOT.json").is_file()]


def _used(home: Path) -> dict[str, int]:
    return {
        "runs": retention.disk_usage(home / "runs"),
        "landing": retention.disk_usage(home / "landing"),
        "warehouse": (home / "warehouse.duckdb").stat().st_size,
    }


def _check_kept_reports(settings: Settings) -> int:
    """Every visible run's report: its snapshots (run.json) and, for each statement it
    reconciled, the billing snapshot that statement was first checked against, exist."""
    n = 0
    for run in sorted(settings.runs_dir.iterdir()):
        if run.name.startswith("."):
            continue
        meta = json.loads((run / "run.json").read_text())
        for s in meta["sources"]:
            if s["snapshot_id"]:
                root = settings.landing_dir / s["partner"] / s["kind"] / meta["period"]
                assert (root / s["snapshot_id"] / "_SNAPSHOT.json").is_file(), (run.name, s)
                n += 1
            if s["kind"] == "statement" and s["status"] == "ok":
                base = ledger_reads.first_billing_snapshot(
                    settings.warehouse_path, meta["period"], s["partner"], s["snapshot_id"]
                )
                root = settings.landing_dir / s["partner"] / "billing" / meta["period"]
                assert base is None or (root / base / "_SNAPSHOT.json").is_file(), run.name
    return n


def test_thirty_nightly_runs_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api
) -> None:
    from flows.schedule import nightly
    from revshare.cli import app

    data, home = tmp_path / "data", tmp_path / "home"
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(data))
    monkeypatch.setenv("REVSHARE_HOME", str(home))
    monkeypatch.delenv("REVSHARE_NOTIFICATIONS", raising=False)
    settings = Settings()
    cli = CliRunner()
    usage: list[dict[str, int]] = []
    marked = None
    closing = 0
    t0 = time.monotonic()
    for night in range(NIGHTS):
        today = FIRST + timedelta(days=night)
        if night % 5 == 0:
            _deliver(data, night)
        # final_after_days=3: October is still reconciled on the first nights of November.
        rows = nightly(partners=["aws"], today=today.isoformat(), final_after_days=3)
        assert all(r["status"] == "completed" for r in rows), rows
        closing += sum(r["role"] == "closing" for r in rows)
        if night == 0:  # finance marks the first November run: it must survive the month
            marked = next(r["run_id"] for r in rows if r["period"] == "2026-11")
            res = cli.invoke(app, ["runs", "mark", marked[:24], "--note", "sent to AWS"])
            assert res.exit_code == 0, res.output
        usage.append(_used(home))
        assert _check_kept_reports(settings) > 0
    wall = time.monotonic() - t0
    print(f"\n{NIGHTS} nightly runs in {wall:.1f} s; disk after each night:")
    for night, u in enumerate(usage, 1):
        print(f"  night {night:2d}: runs {u['runs']:>9,} landing {u['landing']:>9,} "
              f"warehouse {u['warehouse']:>10,}")  # fmt: skip

    # Run folders: the last 3 per period plus the marked one, however many nights ran.
    visible = sorted(p.name for p in settings.runs_dir.iterdir() if not p.name.startswith("."))
    assert marked in visible
    assert len([v for v in visible if v.startswith("2026-11")]) == 3 + 1
    assert closing == 3  # November 1-3: October is final 3 days after it ended
    assert len([v for v in visible if v.startswith("2026-10")]) == 3
    recorded = ledger_reads.list_runs(settings.warehouse_path, limit=1000)
    assert len(recorded) == NIGHTS + closing  # the ledger keeps every run
    # Snapshots: a November delivery every 5 nights (6 in all); only the ones kept runs use
    # remain: the marked run's (the first) and the last three runs' (the latest).
    nov = settings.landing_dir / "aws" / "billing" / "2026-11"
    assert len(_snaps(nov)) == 2
    # Disk plateaus: the run folders and the landing zone hold no more in the last ten
    # nights than in the ten before (they are bounded by the policy, not by the night count).
    pruned = [u["runs"] + u["landing"] for u in usage]
    assert max(pruned[20:]) <= max(pruned[10:20]) * 1.10, pruned
    # ... and about what 7 run folders take (3 per period and the marked one), not 33.
    assert max(pruned) < 8 * pruned[0], pruned
    # The ledger is history and is not pruned; the DuckDB file grows by whole blocks, and
    # over these 30 nights stays within a few blocks of its size after night 10.
    total = [sum(u.values()) for u in usage]
    assert max(total[20:]) <= max(total[10:20]) * 1.10, total

    # A killed run's staging folder, an old and a fresh landing leftover.
    dead = settings.runs_dir / ".2026-11_20261101T030000Z_dead00.partial"
    (dead / "work").mkdir(parents=True)
    (dead / "work" / "aws.billing.parquet").write_bytes(b"x" * 1000)
    old = nov / ".staging-old"
    old.mkdir()
    (old / "part.parquet").write_bytes(b"y" * 1000)
    hours_ago = time.time() - 7 * 3600
    os.utime(old, (hours_ago, hours_ago))
    fresh = nov / ".staging-fresh"  # a pull in progress: younger than temp_max_age_hours
    fresh.mkdir()
    res = cli.invoke(app, ["prune", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert f"partial run\t1000\t{dead}" in res.output
    assert f"temp\t1000\t{old}" in res.output and str(fresh) not in res.output
    assert "would remove 2 item(s)" in res.output
    assert dead.exists() and old.exists()
    res = cli.invoke(app, ["prune"])
    assert res.exit_code == 0 and "removed 2 item(s)" in res.output, res.output
    assert not dead.exists() and not old.exists() and fresh.exists()
    assert _check_kept_reports(settings) > 0

    # Unmarked, the marked run goes at the next prune; its report's snapshots with it only
    # if no kept run uses them.
    res = cli.invoke(app, ["runs", "mark", marked, "--remove"])
    assert res.exit_code == 0, res.output
    assert cli.invoke(app, ["prune"]).exit_code == 0
    assert not (settings.runs_dir / marked).exists()
    assert len(_snaps(nov)) == 1
    assert _check_kept_reports(settings) > 0
