"""Deploy to a real local Prefect server, run the ``rerun`` deployment with parameters,
let a process worker execute it, and check the report it made. This is the finance rerun
through Prefect exactly as docs/operations.md describes it, minus the browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PREFECT = str(REPO / ".venv" / "bin" / "prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict | list | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read() or b"null")
    except OSError:
        return None


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL after ``grace`` s (a worker may ignore TERM)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    port = _free_port()
    return {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_PORT": str(port),
        "REVSHARE_PROJECT_DIR": str(REPO),
        "REVSHARE_CONFIG_DIR": str(REPO / "config"),
        "REVSHARE_DATA_DIR": str(tmp_path / "data"),
        "REVSHARE_HOME": str(tmp_path / "home"),
    }


@pytest.fixture()
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    api, port = env["PREFECT_API_URL"], env["PREFECT_SERVER_API_PORT"]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while _get(f"{api}/health") is not True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prefect server not healthy within 90 s"
            time.sleep(0.5)
        yield api
    finally:
        _stop(proc, 15)
        log.close()


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_deploy_rerun_with_parameters_runs_on_a_worker(
    server: str, env: dict[str, str], tmp_path: Path
) -> None:
    t0 = time.monotonic()
    generate(load_config(REPO / "config"), Period.parse("2026-10"), tmp_path / "data", rows=300)
    _cli(env, "work-pool", "create", "revshare", "--type", "process")
    prefect_file = tmp_path / "prefect.yaml"
    shutil.copy(REPO / "prefect.yaml", prefect_file)
    out = _cli(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))
    for name in ("nightly", "rerun", "backfill"):
        assert name in out
    out = _cli(
        env, "deployment", "run", "reconcile-period/rerun",
        "--param", "period=2026-10", "--param", 'partners=["aws", "snowflake"]',
    )  # fmt: skip
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "revshare", "--run-once"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while True:
            run = _get(f"{server}/flow_runs/{flow_run_id}") or {}
            state = (run.get("state") or {}).get("type")
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert time.monotonic() < deadline, f"flow run still {state}"
            time.sleep(1)
        assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
        assert run["parameters"]["partners"] == ["aws", "snowflake"]
    finally:
        _stop(worker, 30)  # the worker stops before its server (fixture teardown)
        log.close()
    reports = list((tmp_path / "home" / "runs").glob("2026-10_*/report.html"))
    assert len(reports) == 1
    meta = json.loads((reports[0].parent / "run.json").read_text())
    assert meta["partners"] == ["aws", "snowflake"] and meta["status"] == "completed"
    details = json.loads((reports[0].parent / "details.json").read_text())
    assert details["flow_run_id"] == flow_run_id
    print(f"deploy test body: {time.monotonic() - t0:.1f} s")
