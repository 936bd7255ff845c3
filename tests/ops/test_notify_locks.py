"""Notifications against capturing local servers, materiality and "new or changed", and the
(period, partner) lock. No Prefect here: these are the pieces the flow composes."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from flows.extraction import cached_snapshot, is_remote, remember_pull, wants_pull
from flows.locks import LockTimeout, partition_lock, partition_locks
from revshare import notify
from revshare.store import land
from tests.ops.servers import smtp_server, webhook_server

pytestmark = pytest.mark.integration


def _config(tmp: Path, url_env: str, port: int) -> notify.NotifyConfig:
    (tmp / "notifications.yaml").write_text(
        f"""
enabled: true
materiality: {{USD: 100, EUR: 50, default: 1000}}
webhook: {{url_env: {url_env}, timeout_seconds: 5}}
email:
  host: 127.0.0.1
  port: {port}
  from: revshare@example.com
  to: [finance@example.com]
  username: revshare
  password_env: TEST_SMTP_PASSWORD
"""
    )
    return notify.load_notify_config(tmp)


def _d(did: str, amount: str, ccy: str = "USD") -> dict:
    return {"discrepancy_id": did, "partner": "aws", "type": "quantity_mismatch",
            "model_id": "m", "sku": None, "amount": Decimal(amount), "currency": ccy}  # fmt: skip


def test_material_changes_new_changed_and_thresholds(tmp_path: Path) -> None:
    cfg = notify.NotifyConfig(enabled=True, materiality={"USD": Decimal(100), "EUR": Decimal(50)})
    current = [_d("a", "-150"), _d("b", "99.99"), _d("c", "60", "EUR"), _d("d", "200")]
    previous = {"a": {"amount": Decimal("-150"), "type": "x"}, "d": {"amount": Decimal("180")}}
    got = {
        c["discrepancy_id"]: c["change"] for c in notify.material_changes(current, previous, cfg)
    }
    # a: unchanged; b: under USD materiality; c: new and over EUR's; d: amount moved.
    assert got == {"c": "new", "d": "changed"}
    assert {c["discrepancy_id"] for c in notify.material_changes(current, None, cfg)} == {
        "a", "c", "d"}  # fmt: skip


def test_webhook_and_email_delivered_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with webhook_server() as (url, hooks), smtp_server() as (port, mails, logins):
        monkeypatch.setenv("TEST_HOOK_URL", url)
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-pw")
        cfg = _config(tmp_path, "TEST_HOOK_URL", port)
        run = {"run_id": "2026-10_x", "period": "2026-10", "status": "partial", "report": "/r"}
        sent = notify.notify_run(
            cfg, run, notify.material_changes([_d("a", "-150")], None, cfg),
            [{"partner": "gcp", "status": "quarantined", "reason": "gcp/statement: missing"}],
        )  # fmt: skip
    assert [s["status"] for s in sent] == ["sent"] * 4
    assert len(hooks) == 2 and "gcp/statement: missing" in hooks[0]["text"]
    assert "new: aws quantity_mismatch m -150.00 USD" in hooks[1]["text"]
    assert [m["Subject"] for m in mails] == [
        "[revshare] 2026-10: run partial",
        "[revshare] 2026-10: 1 new or changed material discrepancies",
    ]
    assert mails[0]["To"] == "finance@example.com" and logins == ["s3cret-pw"] * 2
    assert "s3cret-pw" not in str(sent) + caplog.text and url not in str(sent)


def test_unreachable_channel_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", "http://127.0.0.1:9/hook?token=secret")
    cfg = _config(tmp_path, "TEST_HOOK_URL", 9)
    sent = notify.deliver(cfg, "s", "b")
    assert [(s["channel"], s["status"]) for s in sent] == [
        ("webhook", "failed"),
        ("email", "failed"),
    ]
    assert "secret" not in str(sent)


def test_disabled_by_default_example_config() -> None:
    cfg = notify.load_notify_config(Path(__file__).resolve().parents[2] / "config")
    assert cfg.enabled is False and cfg.threshold("USD") == Decimal(100)
    assert notify.notify_run(cfg, {}, [_d("a", "1e6")], [{"partner": "x"}]) == []


def test_second_run_waits_then_fails_clearly(tmp_path: Path) -> None:
    with partition_lock(tmp_path, "2026-10", "aws", "run-1"):
        with (
            pytest.raises(LockTimeout, match=r"2026-10/aws .*run run-1"),
            partition_lock(tmp_path, "2026-10", "aws", "run-2", timeout=0.5),
        ):
            pass
        # Another partner, or another period, is not blocked.
        with partition_locks(tmp_path, "2026-10", ["gcp", "azure"], "run-3", timeout=0.5):
            pass
    events: list[str] = []

    def second() -> None:
        with partition_lock(tmp_path, "2026-10", "aws", "run-2", timeout=10):
            events.append("second")

    with partition_lock(tmp_path, "2026-10", "aws", "run-1"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        events.append("first done")
    t.join(10)
    assert events == ["first done", "second"]


def test_remote_pull_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_remote({"path": "s3://b/p"}) and is_remote({"project": "p"})
    assert not is_remote({"path": "aws/cur2"})
    assert wants_pull(None, "aws", "billing") and wants_pull(["aws/billing"], "aws", "billing")
    assert not wants_pull(["statement"], "aws", "billing")
    f = tmp_path / "x.csv"
    f.write_text("a\n1\n")

    class NF:
        path, relpath = f, "x.csv"

    landing = tmp_path / "landing"
    snap = land([NF()], landing, source="t")
    assert cached_snapshot(landing, "k") is None
    remember_pull(landing, "k", snap)
    assert cached_snapshot(landing, "k") == snap
    monkeypatch.setenv("REVSHARE_EXTRACT_CACHE_HOURS", "0")
    assert cached_snapshot(landing, "k") is None
