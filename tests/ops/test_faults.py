"""A source server that is down, slow, or dies mid-download, on the real flow.

AWS's billing export is pulled from a real moto S3 server by boto3; Google's is read from
local files. For each fault the run ends Completed but partial: AWS quarantined with a reason
that names the source, the call that failed and the attempts made; Google reconciled; nothing
of the failed pull landed (no snapshot, no staging leftover). With the server back, a rerun
reconciles AWS too.

- down: the S3 server is stopped before the run (connection refused);
- slow: a proxy holds each request longer than the client's read timeout;
- mid-download: the proxy passes the first bytes of a data file, then the S3 server process
  is stopped and the connection cut.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from revshare import ledger_reads
from revshare.config import Settings, load_config
from revshare.generate import generate
from revshare.periods import Period
from tests.ops.faults import FaultProxy, MotoServer

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
BUCKET, PREFIX = "revshare-billing", "cur2"  # where the generator's manifest says files are
ATTEMPTS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One generated month, a moto server holding AWS's export, a proxy in front of it."""
    root = tmp_path_factory.mktemp("faults")
    generate(load_config(REPO / "config"), Period.parse(PERIOD), root / "data", rows=300)
    moto = MotoServer(root)
    moto.start()
    moto.upload(root / "data" / "aws" / "cur2", BUCKET, PREFIX)
    proxy = FaultProxy(moto.port)
    try:
        yield {"root": root, "moto": moto, "proxy": proxy}
    finally:
        proxy.close()
        moto.stop()


def _config(root: Path, endpoint: str) -> Path:
    """The example config with AWS's billing pulled from S3 at ``endpoint``."""
    cfg = root / f"config-{endpoint.rsplit(':', 1)[1]}"
    if not cfg.exists():
        shutil.copytree(REPO / "config", cfg)
        doc = yaml.safe_load((cfg / "partners.yaml").read_text())
        doc["partners"]["aws"]["billing"] |= {
            "path": f"s3://{BUCKET}/{PREFIX}",
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "retry_attempts": ATTEMPTS,
            "retry_base_delay": 0.1,
            "timeout_seconds": 2,
        }
        (cfg / "partners.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


@pytest.fixture()
def env(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api) -> dict:
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(world["root"] / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REVSHARE_EXTRACT_CACHE_HOURS", "0")  # every run pulls
    monkeypatch.delenv("REVSHARE_NOTIFICATIONS", raising=False)
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    return world


def _run(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from flows.reconcile import reconcile_period

    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(cfg))
    state = reconcile_period(period=PERIOD, partners=["aws", "gcp"], return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def _landing() -> Path:
    return Settings().landing_dir / "aws" / "billing" / PERIOD


def _landed() -> list[str]:
    """Everything in AWS's landing folder for the period (snapshots and any leftovers)."""
    landing = _landing()
    return sorted(p.name for p in landing.iterdir()) if landing.exists() else []


def _check_quarantined(summary: dict, error: str, call: str) -> str:
    by = {p["partner"]: p for p in summary["partners"]}
    assert summary["status"] == "partial"
    assert by["gcp"]["status"] == "reconciled"
    aws = by["aws"]
    assert aws["status"] == "quarantined"
    reason = aws["reason"]
    # The source, the call that failed (and on what), the attempts made, the error kind.
    assert reason.startswith("aws/billing: ")
    assert f"S3 {call} s3://{BUCKET}/{PREFIX}/" in reason
    assert f"failed after {ATTEMPTS} attempt(s): {error}" in reason
    # The ledger records the same reason for the source; nothing of the failed pull landed.
    run = ledger_reads.show_run(Settings().warehouse_path, summary["run_id"])
    src = {(s["partner"], s["kind"]): s for s in run["sources"]}
    assert src[("aws", "billing")]["status"] == "quarantined"
    assert src[("aws", "billing")]["reason"] == reason
    assert src[("aws", "billing")]["snapshot_id"] is None
    assert src[("gcp", "billing")]["status"] == "ok"
    return reason


def _check_recovered(summary: dict) -> None:
    assert summary["status"] == "completed", summary["partners"]
    landed = _landed()
    assert len(landed) == 2 and "_pulls.json" in landed  # one snapshot + the pull record
    sid = next(n for n in landed if n != "_pulls.json")
    assert (_landing() / sid / "_SNAPSHOT.json").is_file()


def test_server_down_then_back(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    moto: MotoServer = env["moto"]
    moto.stop()  # nothing listens on the endpoint: connection refused
    try:
        summary = _run(_config(env["root"], moto.url), monkeypatch)
        _check_quarantined(summary, "EndpointConnectionError", "GetObject")
        assert _landed() == []
    finally:
        moto.start()
        moto.upload(env["root"] / "data" / "aws" / "cur2", BUCKET, PREFIX)
    _check_recovered(_run(_config(env["root"], moto.url), monkeypatch))


def test_server_slow_then_fast(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy: FaultProxy = env["proxy"]
    cfg = _config(env["root"], proxy.url)
    proxy.mode, proxy.delay = "slow", 6.0  # the client's read timeout is 2 s
    try:
        summary = _run(cfg, monkeypatch)
    finally:
        proxy.mode = "up"
    _check_quarantined(summary, "ReadTimeoutError", "GetObject")
    assert _landed() == []
    _check_recovered(_run(cfg, monkeypatch))


def test_server_dies_mid_download_then_back(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy: FaultProxy = env["proxy"]
    moto: MotoServer = env["moto"]
    cfg = _config(env["root"], proxy.url)
    data = sorted((env["root"] / "data" / "aws" / "cur2").rglob("*.parquet"))
    assert data and data[0].stat().st_size > 4000  # big enough to be cut inside its body
    # A first good run lands a snapshot; the failed pull must leave it exactly as it was.
    _check_recovered(_run(cfg, monkeypatch))
    before = {p: p.stat().st_mtime_ns for p in _landing().rglob("*") if p.name != "_pulls.json"}
    proxy.mode, proxy.needle, proxy.cut_after = "cut", b".parquet", 2000
    proxy.on_cut = moto.stop  # the emulator process is stopped while the object is read
    try:
        summary = _run(cfg, monkeypatch)
    finally:
        proxy.mode, proxy.on_cut = "up", None
        moto.start()
        moto.upload(env["root"] / "data" / "aws" / "cur2", BUCKET, PREFIX)
    assert proxy.cuts == 1
    # The first attempt was cut mid-body; the retry found the server gone.
    _check_quarantined(summary, "ConnectionClosedError", "GetObject")
    after = {p: p.stat().st_mtime_ns for p in _landing().rglob("*") if p.name != "_pulls.json"}
    assert after == before  # no new snapshot, no staging or partial file left behind
    _check_recovered(_run(cfg, monkeypatch))
