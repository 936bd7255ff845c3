"""The operations layer on the real flow (Prefect's local API): ledger details, `runs
list/show`, the CLI rerun, notifications on new discrepancies and silence when nothing
changed, `sources` reusing a recorded snapshot; plus the schedule's period arithmetic."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.schedule import nightly_periods, periods_between
from revshare import ledger_reads
from revshare.config import Settings, load_config
from revshare.generate import generate
from revshare.periods import Period
from tests.ops.servers import smtp_server, webhook_server

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_schedule_periods() -> None:
    assert [str(p) for p in periods_between("2026-11", "2027-02")] == [
        "2026-11", "2026-12", "2027-01", "2027-02"]  # fmt: skip
    with pytest.raises(ValueError):
        periods_between("2026-10", "2026-09")
    with pytest.raises(ValueError, match="at most"):
        periods_between("2020-01", "2026-01")
    assert nightly_periods(date(2026, 11, 5), 10) == (Period(2026, 11), Period(2026, 10))
    assert nightly_periods(date(2026, 11, 11), 10) == (Period(2026, 11), None)
    assert nightly_periods(date(2027, 1, 1), 10) == (Period(2027, 1), Period(2026, 12))


@pytest.mark.e2e
def test_ledger_runs_cli_rerun_and_notifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api
) -> None:
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    generate(load_config(REPO / "config"), Period.parse("2026-10"), tmp_path / "data", rows=300)
    from flows.reconcile import reconcile_period
    from revshare.cli import app

    cli = CliRunner()
    with webhook_server() as (url, hooks), smtp_server() as (port, mails, _):
        monkeypatch.setenv("TEST_HOOK_URL", url)
        (tmp_path / "notifications.yaml").write_text(
            "enabled: true\nmateriality: {default: 0.01}\n"
            "webhook: {url_env: TEST_HOOK_URL}\n"
            f"email: {{host: 127.0.0.1, port: {port}, from: r@x.test, to: [f@x.test]}}\n"
        )
        monkeypatch.setenv("REVSHARE_NOTIFICATIONS", str(tmp_path / "notifications.yaml"))
        first = reconcile_period(period="2026-10", partners=["aws"])
        assert len(hooks) == 1 and "new: aws" in hooks[0]["text"]
        assert len(mails) == 1 and "material discrepancies" in mails[0]["Subject"]

        # The finance rerun from the CLI: same inputs, nothing new, so nobody is paged.
        res = cli.invoke(app, ["rerun", "--period", "2026-10", "--partner", "aws"])
        assert res.exit_code == 0, res.output
        assert len(hooks) == 1 and len(mails) == 1

        # Only the statement re-extracted: billing reuses the snapshot the last run used.
        third = reconcile_period(period="2026-10", partners=["aws"], sources=["statement"])
    wh = Settings().warehouse_path
    runs = ledger_reads.list_runs(wh)
    assert len(runs) == 3 and runs[-1]["run_id"] == first["run_id"]
    assert all(r["duration_seconds"] > 0 for r in runs)
    shown = ledger_reads.show_run(wh, third["run_id"])
    assert shown["params"]["sources"] == ["statement"]
    assert {s["kind"]: s["snapshot_id"] for s in shown["sources"]} == {
        s["kind"]: s["snapshot_id"] for s in ledger_reads.show_run(wh, first["run_id"])["sources"]
    }
    assert set(shown["timings"]) >= {"aws", "publish", "lock_wait"}
    assert shown["notifications"] == []
    assert [n["channel"] for n in ledger_reads.show_run(wh, first["run_id"])["notifications"]] == [
        "webhook", "email"]  # fmt: skip

    res = cli.invoke(app, ["runs", "list"])
    assert res.exit_code == 0 and first["run_id"] in res.output
    res = cli.invoke(app, ["runs", "show", first["run_id"], "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc["report_path"] == first["report"] and doc["status"] == "completed"
    res = cli.invoke(app, ["runs", "show", first["run_id"][:25]])
    assert res.exit_code == 0 and "Sources" in res.output and "aws" in res.output
    assert cli.invoke(app, ["runs", "show", "nope"]).exit_code == 1
