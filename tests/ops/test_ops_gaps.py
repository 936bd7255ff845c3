"""Operations paths the other ops tests leave out, on Prefect's real local API: the
``nightly`` and ``backfill`` wrappers end to end, an extraction concurrency limit that exists
on the API and is taken, the extract task's retry / no-retry / timeout policy, the
crash-before-publish notification, and the contents of the run's artifacts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from connectors.base import Capabilities, Connector, ConnectorSettings, Delivery, NativeFile
from revshare.config import load_config
from revshare.errors import SourceError
from revshare.generate import generate
from revshare.periods import Period
from tests.ops.servers import webhook_server

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ROWS = 200


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api) -> Path:
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REVSHARE_NOTIFICATIONS", raising=False)
    return tmp_path


def _generate(ws: Path, *periods: str) -> dict[str, dict]:
    config = load_config(REPO / "config")
    return {p: generate(config, Period.parse(p), ws / "data", rows=ROWS) for p in periods}


def _artifacts(flow_run_id: UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: a for a in arts if a.key}


def _table(artifact: Any) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def _hooks_config(ws: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", url)
    (ws / "notifications.yaml").write_text(
        "enabled: true\nmateriality: {default: 0.01}\nwebhook: {url_env: TEST_HOOK_URL}\n"
    )
    monkeypatch.setenv("REVSHARE_NOTIFICATIONS", str(ws / "notifications.yaml"))


# 1. nightly and backfill ---------------------------------------------------------------------


def test_nightly_runs_open_and_closing_period(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.schedule import nightly

    _generate(workspace, "2026-10")
    with webhook_server() as (url, hooks):
        _hooks_config(workspace, monkeypatch, url)
        state = nightly(partners=["aws"], today="2026-11-05", return_state=True)
    assert state.is_completed(), state.message
    rows = state.result()
    assert [(r["period"], r["role"]) for r in rows] == [
        ("2026-11", "month to date"), ("2026-10", "closing")]  # fmt: skip
    # The open month has no data yet: its run fails (nothing reconciled), which is expected.
    assert rows[0]["state"] == "FAILED" and "no partner could be reconciled" in rows[0]["error"]
    assert rows[1]["state"] == "COMPLETED" and rows[1]["status"] == "completed"
    assert Path(rows[1]["report"]).is_file()
    # The month-to-date run notifies nobody (not even its crash hook); the closing one does.
    assert hooks and all("2026-11" not in h["text"] for h in hooks)
    assert any("2026-10" in h["text"] for h in hooks)
    art = _artifacts(state.state_details.flow_run_id)["nightly"]
    assert [r["period"] for r in _table(art)] == ["2026-11", "2026-10"]

    # After the previous month is final only the open month runs.
    late = nightly(partners=["aws"], today="2026-11-20", return_state=True)
    assert late.is_completed() and [r["period"] for r in late.result()] == ["2026-11"]


def test_backfill_oldest_first_and_names_failed_periods(workspace: Path) -> None:
    from flows.schedule import backfill

    _generate(workspace, "2026-09", "2026-10")
    state = backfill(start="2026-09", end="2026-11", partners=["aws"], return_state=True)
    # 2026-11 has no delivery: it fails, the others still ran, the backfill names it.
    assert state.is_failed()
    assert "1 period(s) failed: 2026-11" in state.message
    rows = _table(_artifacts(state.state_details.flow_run_id)["backfill"])
    assert [(r["period"], r["state"]) for r in rows] == [
        ("2026-09", "COMPLETED"), ("2026-10", "COMPLETED"), ("2026-11", "FAILED")]  # fmt: skip
    assert rows[0]["run_id"] < rows[1]["run_id"]  # oldest first
    assert all(Path(r["report"]).is_file() for r in rows[:2])

    ok = backfill(start="2026-09", end="2026-10", partners=["aws"], dry_run=True)
    assert [r["status"] for r in ok] == ["completed", "completed"]


# 2 + 5. a concurrency limit on the API, and the artifacts ----------------------------------


def test_extract_limit_taken_and_artifacts(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from connectors.aws_cur2 import AwsCur2Connector
    from flows import extraction
    from flows.reconcile import reconcile_period

    truth = _generate(workspace, "2026-10")["2026-10"]
    name = "revshare-extract-aws_cur2"
    seen: list[int] = []
    original = AwsCur2Connector.fetch

    def spying_fetch(self: Connector, period: Period, staging: Path) -> Delivery:
        with get_client(sync_client=True) as client:
            seen.append(client.read_global_concurrency_limit_by_name(name).active_slots)
        return original(self, period, staging)

    monkeypatch.setattr(AwsCur2Connector, "fetch", spying_fetch)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    try:
        assert name in extraction.defined_limits()
        state = reconcile_period(period="2026-10", partners=["aws"], return_state=True)
        with get_client(sync_client=True) as client:
            after = client.read_global_concurrency_limit_by_name(name).active_slots
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(name)
    assert state.is_completed(), state.message
    assert seen == [1]  # the extraction ran holding the one slot
    assert after == 0  # and gave it back

    summary = state.result()
    arts = _artifacts(state.state_details.flow_run_id)
    assert {"reconciliation-summary", "reconciliation-report", "discrepancies"} <= set(arts)
    uri = Path(summary["report"]).resolve().as_uri()
    assert f"[report.html]({uri})" in arts["reconciliation-summary"].data
    assert f"({uri})" in arts["reconciliation-report"].data
    planted = [
        d for d in truth["discrepancies"] if d["partner"] == "aws" and d["phase"] == "initial"
    ]
    table = _table(arts["discrepancies"])
    assert planted and len(table) == len(planted) == summary["discrepancies"]
    assert {r["partner"] for r in table} == {"aws"}
    assert "reconciliation-warning" not in arts


# 3. retries, no retry on SourceError, timeout ------------------------------------------------


class _Settings(ConnectorSettings):
    pass


class _ProbeConnector(Connector):
    """Test-only connector: fetch behaviour is set per instance."""

    type = "test_probe"
    capabilities = Capabilities(produces="billing", formats=("csv",))
    settings_model = _Settings

    def __init__(self, data_dir: Path, behaviour: list[str]) -> None:
        super().__init__(_Settings(type=self.type), data_dir, "probe/billing")
        self.behaviour = behaviour
        self.calls = 0

    def locate(self, period: Period) -> Delivery:  # pragma: no cover - fetch overridden
        raise NotImplementedError

    def fetch(self, period: Period, staging: Path) -> Delivery:
        self.calls += 1
        what = self.behaviour[min(self.calls, len(self.behaviour)) - 1]
        if what == "transient":
            raise ConnectionError("connection reset by peer")
        if what == "permanent":
            raise self.error("access denied to the bucket")
        if what == "slow":
            time.sleep(5)
        f = staging / "usage.csv"
        f.write_text(f"a,b\n1,{self.calls}\n")
        return Delivery((NativeFile(f, "usage.csv"),))

    def normalize_sql(self, ctx: Any) -> str:  # pragma: no cover - not normalized here
        raise NotImplementedError


@pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted:UserWarning")
def test_extract_retries_transient_not_source_error_and_times_out(
    tmp_path: Path, prefect_api
) -> None:
    from flows.extraction import _transient, extract_task

    # The policy as configured on the task (the test shortens only the waits).
    assert extract_task.retries == 2 and extract_task.retry_condition_fn is _transient
    assert extract_task.timeout_seconds == 1800
    fast = extract_task.with_options(retry_delay_seconds=0, retry_jitter_factor=None)
    period = Period.parse("2026-10")

    flaky = _ProbeConnector(tmp_path, ["transient", "ok"])
    snap = fast(flaky, period, tmp_path / "landing-a", None)
    assert flaky.calls == 2 and snap.files == ("usage.csv",)

    down = _ProbeConnector(tmp_path, ["transient"])
    with pytest.raises(ConnectionError):
        fast(down, period, tmp_path / "landing-b", None)
    assert down.calls == 3  # one attempt and two retries

    denied = _ProbeConnector(tmp_path, ["permanent", "ok"])
    with pytest.raises(SourceError, match="access denied"):
        fast(denied, period, tmp_path / "landing-c", None)
    assert denied.calls == 1  # permanent: not retried

    slow = _ProbeConnector(tmp_path, ["slow"])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        fast.with_options(timeout_seconds=1, retries=0)(slow, period, tmp_path / "landing-d", None)
    assert slow.calls == 1 and time.monotonic() - t0 < 4.5


# 4. crash before publishing -> the on_failure hook notifies ---------------------------------


def test_crash_before_publish_notifies(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.reconcile import reconcile_period

    with webhook_server() as (url, hooks):
        _hooks_config(workspace, monkeypatch, url)
        state = reconcile_period(period="2026-10", partners=["nope"], return_state=True)
    assert state.is_failed()
    assert len(hooks) == 1, hooks
    text = hooks[0]["text"]
    assert "2026-10" in text and "failed" in text and "unknown partner(s): nope" in text
    assert not (workspace / "home" / "runs").exists() or not any(
        (workspace / "home" / "runs").iterdir()
    )
