"""Real `revshare run` processes: one killed with SIGKILL mid-run, two of one period at once.

Killed: no partial output was ever visible (the run folder only appears, complete, by a
rename; its staging folder is left behind, hidden), the ledger shows the run ``running`` and
then ``interrupted`` once `revshare runs list` sees its locks are gone, the locks it left do
not block the rerun, and the rerun's result files are byte-identical to an uninterrupted
run's. Concurrent: the second run waits for the first and both give the same figures; a run
that may not wait that long fails naming the holder.

The processes use the test session's Prefect API (PREFECT_API_URL), as a worker would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.locks import live_runs
from revshare import ledger_reads
from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period
from revshare.runs import RUN_ID, partial_run_id

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
RESULTS = ("reconciliation.parquet", "discrepancies.parquet", "discrepancies.csv")
CLOUDS = ["aws", "gcp", "azure", "snowflake"]  # the four partners with a billing export


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "data"
    generate(load_config(REPO / "config"), Period.parse(PERIOD), out, rows=300)
    return out


def _env(data: Path, home: Path, **extra: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("REVSHARE_")}
    return env | {
        "REVSHARE_CONFIG_DIR": str(REPO / "config"),
        "REVSHARE_DATA_DIR": str(data),
        "REVSHARE_HOME": str(home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        **extra,
    }


class Proc:
    """A `revshare ...` subprocess whose output is collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.p = subprocess.Popen(
            [sys.executable, "-m", "revshare.cli", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, cond, what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.p.poll() is not None:
                time.sleep(0.5)  # let the reader drain
                pytest.fail(f"process ended ({self.p.returncode}) before {what}:\n{self.output}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.output}")
            time.sleep(0.1)

    def finish(self, timeout: float = 400) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"process did not finish:\n{self.output}")

    def kill(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(30)


def _visible_runs(home: Path) -> list[Path]:
    runs = home / "runs"
    return sorted(p for p in runs.iterdir() if RUN_ID.match(p.name)) if runs.exists() else []


def _results(run: Path) -> dict[str, bytes]:
    return {name: (run / "results" / name).read_bytes() for name in RESULTS}


def test_killed_run_leaves_nothing_visible_and_rerun_matches(
    data: Path, tmp_path: Path, prefect_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    runs = home / "runs"
    seen_visible: list[str] = []
    proc = Proc(["run", "--period", PERIOD, *(f"--partner={p}" for p in CLOUDS)], _env(data, home))

    def first_partner_done() -> bool:
        seen_visible.extend(p.name for p in _visible_runs(home))
        return any("aws reconciled" in line for line in proc.lines)

    proc.wait_for(first_partner_done, "the first partner reconciled")
    proc.kill()  # SIGKILL: no handler, no cleanup, no finally
    assert proc.p.returncode == -signal.SIGKILL
    assert seen_visible == [] and _visible_runs(home) == []  # never a visible run folder
    partials = [p for p in runs.iterdir() if partial_run_id(p)]
    assert len(partials) == 1
    killed = partial_run_id(partials[0])
    assert not list(runs.rglob("report.html")) and not (partials[0] / "results").exists()
    # Landing snapshots are staged then renamed: every snapshot folder is complete.
    # (A pull cut short leaves only a hidden staging folder, which retention removes.)
    for snap in (home / "landing").glob("*/*/*/*"):
        if snap.is_dir() and not snap.name.startswith("."):
            assert (snap / "_SNAPSHOT.json").is_file(), snap
    wh = home / "warehouse.duckdb"
    assert [r["status"] for r in ledger_reads.list_runs(wh)] == ["running"]
    # Its lock files are still there, naming it, but nobody holds them.
    assert (home / "locks" / PERIOD / "aws.lock").read_text().count(killed) == 1
    assert live_runs(home) == {}

    listed = Proc(["runs", "list"], _env(data, home))
    assert listed.finish(120) == 0, listed.output
    assert "interrupted" in listed.output and killed[:20] in listed.output
    assert ledger_reads.show_run(wh, killed)["status"] == "interrupted"

    # The rerun is not blocked by the dead run's locks and completes.
    from flows.reconcile import reconcile_period

    for k, v in _env(data, home).items():
        if k.startswith("REVSHARE_"):
            monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    rerun = reconcile_period(period=PERIOD, partners=CLOUDS)
    assert time.monotonic() - t0 < 300
    assert rerun["status"] == "completed"
    assert ledger_reads.show_run(wh, rerun["run_id"])["timings"]["lock_wait"] < 5
    assert [r["status"] for r in ledger_reads.list_runs(wh)] == ["completed", "interrupted"]

    # The same figures as a run that was never interrupted (in a fresh home).
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "clean"))
    clean = reconcile_period(period=PERIOD, partners=CLOUDS)
    assert clean["discrepancies"] == rerun["discrepancies"] > 0
    assert _results(Path(rerun["report"]).parent) == _results(Path(clean["report"]).parent)


def test_two_processes_same_period(data: Path, tmp_path: Path, prefect_api) -> None:
    home = tmp_path / "home"
    args = ["run", "--period", PERIOD, "--partner", "aws"]
    first = Proc(args, _env(data, home))
    first.wait_for(lambda: bool(live_runs(home)), "the first run to hold its lock")
    holder = next(iter(live_runs(home)))
    waiting = Proc(args, _env(data, home))
    impatient = Proc(args, _env(data, home, REVSHARE_LOCK_TIMEOUT_SECONDS="1"))
    assert impatient.finish() != 0
    # Fails clearly, naming the period, partner and the run holding it.
    assert f"{PERIOD}/aws is being reconciled by another run (run 2026-10_" in impatient.output
    assert "waited 1 s" in impatient.output
    assert first.finish() == 0, first.output
    assert waiting.finish() == 0, waiting.output

    wh = home / "warehouse.duckdb"
    recorded = ledger_reads.list_runs(wh)
    assert [r["status"] for r in recorded] == ["completed", "completed"]
    assert recorded[-1]["run_id"] == holder  # the first to take the lock published first
    shown = [ledger_reads.show_run(wh, r["run_id"]) for r in recorded]
    assert shown[0]["timings"]["lock_wait"] > shown[1]["timings"]["lock_wait"]  # it waited
    assert shown[0]["discrepancies"] == shown[1]["discrepancies"]
    # Not corrupted: both runs' result files are byte-identical, and complete.
    folders = _visible_runs(home)
    assert len(folders) == 2
    assert _results(folders[0]) == _results(folders[1])
    assert not [p for p in (home / "runs").iterdir() if p.name.startswith(".")]
