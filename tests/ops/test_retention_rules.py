"""The retention rules on a small hand-built home (no Prefect): which runs and snapshots are
kept and why, the ledger's running/interrupted bookkeeping, and the staged run folder."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.locks import live_runs, partition_locks, sweep_interrupted
from revshare import ledger, ledger_reads, retention
from revshare.outcome import SourceOutcome
from revshare.runs import RunPaths, staging_dir

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 3, tzinfo=UTC)


def _snap(landing: Path, partner: str, kind: str, period: str, sid: str, age: int) -> None:
    d = landing / partner / kind / period / sid
    d.mkdir(parents=True)
    (d / "f.csv").write_text("x" * 100)
    (d / "_SNAPSHOT.json").write_text("{}")
    t = time.time() - age
    os.utime(d / "_SNAPSHOT.json", (t, t))


def _run(home: Path, i: int, status: str, billing: str, statement: str) -> str:
    """A recorded, published run of 2026-10 for aws, started ``i`` hours after T0."""
    started = T0 + timedelta(hours=i)
    rid = f"2026-10_{started:%Y%m%dT%H%M%SZ}_{i:06x}"
    ledger.record_start(home / "warehouse.duckdb", rid, "2026-10", ["aws"], started)
    ok = "ok" if status != "failed" else "quarantined"
    src = [
        SourceOutcome("aws", k, "t", snapshot_id=s, rows=1, status=ok).ledger_row()
        for k, s in (("billing", billing), ("statement", statement))
    ]
    run = {"run_id": rid, "period": "2026-10", "partners": ["aws"], "started_at": started,
           "finished_at": started, "status": status, "report_path": "r"}  # fmt: skip
    ledger.record_run(home / "warehouse.duckdb", run, src, {})
    folder = home / "runs" / rid
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"period": "2026-10", "sources": src}))
    return rid


def test_plan_keeps_what_kept_reports_need(tmp_path: Path) -> None:
    home, landing = tmp_path, tmp_path / "landing"
    for sid, age in (("b1", 900), ("b2", 800), ("b3", 700), ("b4", 600), ("b5", 500)):
        _snap(landing, "aws", "billing", "2026-10", sid, age)
    for sid, age in (("s1", 900), ("s2", 500)):
        _snap(landing, "aws", "statement", "2026-10", sid, age)
    _snap(landing, "gcp", "billing", "2026-10", "g1", 900)  # nobody used it: the newest
    r1 = _run(home, 1, "completed", "b1", "s1")  # s1 first checked against b1: its baseline
    r2 = _run(home, 2, "completed", "b2", "s1")
    r3 = _run(home, 3, "partial", "b3", "s2")
    r4 = _run(home, 4, "failed", "b4", "s2")
    r5 = _run(home, 5, "failed", "b4", "s2")
    wh = home / "warehouse.duckdb"
    ledger.mark_run(wh, r2[:20], T0, "sent to AWS")
    cfg = retention.RetentionConfig(keep_runs_per_period=2)
    plan = retention.plan(home / "runs", landing, wh, cfg, live={})
    # r4, r5: the last two; r3: the latest reported; r2: marked. r1 goes.
    assert plan.kept_runs == {r2, r3, r4, r5}
    assert [p.name for p in plan.runs] == [r1]
    # b1 is r1's only, yet stays: it is the baseline of s1, which marked r2 reconciled.
    # b5 is unused but the newest billing snapshot; nothing else is unreferenced.
    assert plan.snapshots == []
    assert {p.name for p in plan.kept_snapshots} == {"b1", "b2", "b3", "b4", "b5", "s1", "s2", "g1"}

    ledger.mark_run(wh, r2, T0, remove=True)
    plan = retention.plan(home / "runs", landing, wh, cfg, live={})
    assert plan.kept_runs == {r3, r4, r5}
    # Now s1 is used by no kept run: s1, b1, b2 go (b1 was only s1's baseline).
    assert sorted(p.name for p in plan.snapshots) == ["b1", "b2", "s1"]
    # A live run on (2026-10, aws) protects every snapshot of that partition.
    busy = retention.plan(home / "runs", landing, wh, cfg, live={"x": {("2026-10", "aws")}})
    assert busy.snapshots == []
    retention.apply(plan)
    assert not (home / "runs" / r1).exists() and not (landing / "aws/billing/2026-10/b1").exists()
    assert (landing / "aws/billing/2026-10/b3/_SNAPSHOT.json").exists()
    assert not list((home / "runs").glob(".*")) and not list(landing.glob("*/*/*/.*"))


def test_running_interrupted_and_staged_folder(tmp_path: Path) -> None:
    wh = tmp_path / "warehouse.duckdb"
    paths = RunPaths(tmp_path / "runs" / "2026-10_20261101T030000Z_abcdef", staged=True)
    with partition_locks(tmp_path, "2026-10", ["aws", "gcp"], paths.final.name):
        ledger.record_start(wh, paths.final.name, "2026-10", ["aws", "gcp"], T0)
        assert live_runs(tmp_path) == {
            paths.final.name: {("2026-10", "aws"), ("2026-10", "gcp")}}  # fmt: skip
        assert sweep_interrupted(tmp_path, wh) == []  # alive: left alone
        paths.results.mkdir(parents=True)
        (paths.results / "x.csv").write_text("1")
        assert paths.root == staging_dir(paths.final) and not paths.final.exists()
        paths.commit()
        assert paths.root == paths.final and (paths.results / "x.csv").read_text() == "1"
        assert not staging_dir(paths.final).exists()
    # The run never published: once its locks are gone it is interrupted (once).
    assert live_runs(tmp_path) == {}
    assert sweep_interrupted(tmp_path, wh) == [paths.final.name]
    assert sweep_interrupted(tmp_path, wh) == []
    assert ledger_reads.show_run(wh, paths.final.name)["status"] == ledger_reads.INTERRUPTED


def test_run_id_prefix_resolves_alike_for_show_and_mark(tmp_path: Path) -> None:
    """``runs show`` and ``runs mark`` take the same unique prefix and refuse alike."""
    r1, r2 = _run(tmp_path, 1, "completed", "b1", "s1"), _run(tmp_path, 2, "completed", "b2", "s1")
    wh = tmp_path / "warehouse.duckdb"
    assert ledger_reads.show_run(wh, r2[:20])["run_id"] == r2
    assert ledger.mark_run(wh, r1[:20], T0) == r1
    for prefix, message in (
        ("2026-09", "no recorded run matches '2026-09'"),
        ("2026-10_", "2 recorded runs match '2026-10_': give more of the id"),
    ):
        with pytest.raises(KeyError) as shown:
            ledger_reads.show_run(wh, prefix)
        with pytest.raises(KeyError) as marked:
            ledger.mark_run(wh, prefix, T0)
        assert shown.value.args[0] == marked.value.args[0] == message
    # No warehouse at all: nothing matches (and show_run creates none).
    with pytest.raises(KeyError, match="no recorded run matches"):
        ledger_reads.show_run(tmp_path / "none.duckdb", r1)
    assert not (tmp_path / "none.duckdb").exists()
