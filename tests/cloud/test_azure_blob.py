"""Azure cost exports pulled from Blob Storage: generator -> Azurite -> fetch -> land -> normalize.

Azurite is a real Blob Storage server (it checks shared-key signatures and SAS); the official
azure-storage-blob client uploads the generator's export and the connector pulls it back over
HTTP. Transient failures come from a small local proxy that answers 503 before forwarding.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from conftest import in_one_order
from servers import AZURITE_ACCOUNT, AZURITE_KEY, azurite, azurite_connection_string  # noqa: F401 (fixtures)

from connectors.azure_cost import AzureCostConnector, AzureCostSettings
from connectors.base import Delivery, NormalizeContext, SourceError
from revshare.generate import azure
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.store import Snapshot, land, open_snapshot

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("REVSHARE_TOOLS_DIR", REPO / "var" / "tools"))
AZURITE = TOOLS / "node" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = AZURITE_ACCOUNT
KEY = AZURITE_KEY
WRONG_KEY = "QmFkS2V5" * 11 + "QQ=="
PERIOD = Period(2026, 8)
EXPORT = "revshare-foundry"
ROOT = "costexports"
ENV = "REVSHARE_TEST_AZURE_CONN"


def _conn_str(port: int, key: str = KEY) -> str:
    return azurite_connection_string(port, key)


# -- a tiny fault-injecting proxy ---------------------------------------------------------------


class FaultProxy:
    """Forwards HTTP to Azurite, answering 503 ServerBusy when ``fail(method, path, n)`` says
    so (``n`` = how often this method+path was seen, from 1). Local, bounded, no mocks."""

    def __init__(self, upstream: int, fail: Callable[[str, str, int], bool]) -> None:
        self.upstream, self.fail = upstream, fail
        self.seen: dict[tuple[str, str], int] = {}
        self.faults: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = (self.command, self.path.split("?")[0])
                with proxy.lock:
                    proxy.requests += 1
                    proxy.seen[key] = n = proxy.seen.get(key, 0) + 1
                    inject = proxy.fail(*key, n)
                    if inject:
                        proxy.faults.append(f"{key[0]} {key[1]}")
                if inject:
                    # As Azure words it. (A body without <Message> makes azure-storage-blob
                    # 12.31 raise TypeError while parsing the error: real Azure always sends one.)
                    payload = (
                        b"<?xml version='1.0' encoding='utf-8'?><Error><Code>ServerBusy"
                        b"</Code><Message>The server is busy.</Message></Error>"
                    )
                    self.send_response(503, "Server Busy")
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                skip = {"host", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                up.request(self.command, self.path, body=body or None, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                up.close()

            do_GET = do_PUT = do_DELETE = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- data ---------------------------------------------------------------------------------------


def _line(
    n: int,
    *,
    cur: str = "USD",
    cost: str = "1.234567890123",
    kind: str = "usage",
    bp: str = "2026-08",
    day: int = 3,
    parent: str | None = None,
    sku: str = "Llama-3.3-70B-Instruct Input Tokens",
) -> dict:
    return {
        "line_id": f"az-{n}", "partner": "azure", "account_id": f"bp-{cur.lower()}",
        "account_name": f"Contoso {cur}", "currency": cur,
        "usage_start": datetime(2026, 8, day, tzinfo=UTC),
        "usage_end": datetime(2026, 8, day, 1, tzinfo=UTC), "billing_period": bp,
        "region": "eastus" if cur == "USD" else "swedencentral", "kind": kind,
        "licensed": True, "service": "Foundry Models", "sku_key": sku,
        "sku_id": f"meter-{sku[:8]}", "quantity": D("1234.567"), "unit_price": D("0.00071"),
        "cost": D(cost), "credits": None, "credit_price": None, "parent_line_id": parent,
    }  # fmt: skip


def _lines() -> pa.Table:
    rows = [
        _line(1),
        _line(2, cost="0.000000000001", sku="Llama-3.3-70B-Instruct Output Tokens"),
        _line(3, cur="EUR", cost="2.5", day=5),
        _line(4, cur="EUR", cost="10.123456789012", day=31),
        _line(5, kind="refund", cost="-0.5", parent="az-1"),
        _line(6, kind="credit", cur="EUR", cost="-1.000000000007", parent="az-3"),
        _line(7, kind="tax", cost="0.25"),  # cost details are pre-tax: not written
        _line(8, bp="2026-09", cost="99"),  # late row billed next month: filtered out
        _line(9, cost="3.3", sku="gpt-4o-mini-0718 Inp glbl Tokens", day=20),
    ]
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


def _expected_totals(lines: pa.Table) -> dict[tuple[str, str], D]:
    cat = {"usage": "Usage", "refund": "Credit", "credit": "Credit"}
    out: dict[tuple[str, str], D] = {}
    for r in lines.to_pylist():
        if r["kind"] != "tax" and r["billing_period"] == str(PERIOD):
            k = (cat[r["kind"]], r["currency"])
            out[k] = out.get(k, D(0)) + r["cost"]
    return out


def _with_parquet_part(written: list[Path]) -> None:
    """Turn the run's second part into a Parquet part and fix the manifest, as a Parquet
    export would deliver it (typed columns: DATE dates, DOUBLE money)."""
    manifest_path = written[-1]
    csv_part = written[1]
    pq = csv_part.with_name(csv_part.name.replace(".csv.gz", ".snappy.parquet"))
    duckdb.execute(f"COPY (SELECT * FROM read_csv('{csv_part}', header = true)) "
                   f"TO '{pq}' (FORMAT parquet, COMPRESSION snappy)")  # fmt: skip
    csv_part.unlink()
    doc = json.loads(manifest_path.read_text())
    for b in doc["blobs"]:
        if b["blobName"].endswith(csv_part.name):
            b["blobName"] = b["blobName"].replace(csv_part.name, pq.name)
            b["byteCount"] = pq.stat().st_size
    doc["byteCount"] = sum(b["byteCount"] for b in doc["blobs"])
    manifest_path.write_text(json.dumps(doc, indent=2) + "\n")


# -- helpers ------------------------------------------------------------------------------------


def _service(port: int) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(_conn_str(port))


def _upload(
    port: int, container: str, local_root: Path, skip: Callable[[str], bool] | None = None
) -> None:
    """Upload CONTAINER/ROOT from disk with the official client (streamed from the file)."""
    cc = _service(port).get_container_client(container)
    if not cc.exists():
        cc.create_container()
    for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
        rel = path.relative_to(local_root).as_posix()
        if skip is not None and skip(rel):
            continue
        with path.open("rb") as f:
            cc.upload_blob(f"{ROOT}/{rel}", f, overwrite=True)


def _remote(container: str, **extra: object) -> AzureCostConnector:
    settings = AzureCostSettings(type="azure_cost", path=ROOT, export_name=EXPORT,
                                 container=container, retry_base_delay=0.01,
                                 **({"connection_string_env": ENV} | extra))  # fmt: skip
    return AzureCostConnector(settings, Path("/nonexistent"), "azure/billing")


def _local(root: Path) -> AzureCostConnector:
    settings = AzureCostSettings(type="azure_cost", path=str(root), export_name=EXPORT)
    return AzureCostConnector(settings, root.parent, "azure/billing")


def _extract(conn: AzureCostConnector, tmp: Path, landing: Path) -> tuple[Snapshot, Delivery]:
    """What the core's extract does with a remote source: fetch into a fresh staging folder,
    land the files as a content-addressed snapshot, drop staging."""
    staging = tmp / f"staging-{time.monotonic_ns()}"
    staging.mkdir()
    try:
        delivery = conn.fetch(PERIOD, staging)
        snap = land(delivery.files, landing, source=conn.source_name, version=delivery.version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return snap, delivery


def _normalize(
    conn: AzureCostConnector, snap_id: str, snap_dir: Path, files: tuple[str, ...]
) -> pa.Table:
    ctx = NormalizeContext("azure", PERIOD, snap_id, snap_dir, tuple(sorted(files)))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = conn.normalize_sql(ctx)
    return con.execute(f"SELECT * FROM ({sql}) ORDER BY x_NativeLineId").to_arrow_table()


def _totals(out: pa.Table) -> dict[tuple[str, str], D]:
    rows = duckdb.sql(
        "SELECT ChargeCategory, BillingCurrency, sum(BilledCost) FROM out GROUP BY ALL"
    ).fetchall()
    return {(c, cur): total for c, cur, total in rows}


def _snapshot_dirs(landing: Path) -> list[str]:
    return sorted(p.name for p in landing.iterdir() if not p.name.startswith("."))


@pytest.fixture
def env(azurite: int, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv(ENV, _conn_str(azurite))
    return azurite


# -- tests --------------------------------------------------------------------------------------


def test_round_trip_equals_local_read(
    env: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(azure, "ROWS_PER_PART", 3)  # three parts: csv.gz, parquet, csv.gz
    lines = _lines()
    local_root = tmp_path / "export"
    written = azure.write(lines, PERIOD, local_root, export_name=EXPORT)
    _with_parquet_part(written)
    # Another period's export beside it: never downloaded for this period.
    azure.write(lines.slice(0, 2), Period(2026, 7), local_root, export_name=EXPORT)
    _upload(env, "roundtrip", local_root)

    conn = _remote("roundtrip")
    t0 = time.perf_counter()
    snap, delivery = _extract(conn, tmp_path, tmp_path / "landing")
    pulled = time.perf_counter() - t0
    remote_out = _normalize(conn, snap.id, snap.dir, snap.files)

    local_conn = _local(local_root)
    loc = local_conn.locate(PERIOD)
    local_files = tuple(f.relpath for f in loc.files)
    local_out = _normalize(local_conn, snap.id, local_root, local_files)

    assert sorted(snap.files) == sorted(local_files)  # same layout, same relpaths
    assert any(f.endswith(".snappy.parquet") for f in snap.files)
    assert all(f.startswith(f"{EXPORT}/20260801-20260831/") for f in snap.files)
    # every column, every row, exact decimals
    assert in_one_order(remote_out).equals(in_one_order(local_out))
    assert remote_out.num_rows == 7
    assert _totals(remote_out) == _expected_totals(lines)
    manifest = json.loads(written[-1].read_text())
    run_id = manifest["runInfo"]["runId"]
    assert delivery.version.startswith(run_id + "@") and loc.version == run_id
    assert delivery.metadata["container"] == "roundtrip"
    assert "skippedIncompleteRuns" not in delivery.metadata
    assert pulled < 10


def test_newest_complete_run_wins(env: int, tmp_path: Path) -> None:
    lines = _lines()
    local_root = tmp_path / "export"
    azure.write(lines, PERIOD, local_root, export_name=EXPORT, version=1)
    v2 = azure.write(lines.slice(0, 4), PERIOD, local_root, export_name=EXPORT, version=2)
    v3 = azure.write(lines, PERIOD, local_root, export_name=EXPORT, version=3)
    v4 = azure.write(lines, PERIOD, local_root, export_name=EXPORT, version=4)
    missing = v3[0].relative_to(local_root).as_posix()  # v3: a part never arrived
    v4[0].write_bytes(v4[0].read_bytes()[:-7])  # v4: a part shorter than promised
    _upload(env, "incomplete", local_root, skip=lambda rel: rel == missing)
    v3[0].unlink()  # the local copy mirrors the container, for the comparison below

    _, delivery = _extract(_remote("incomplete"), tmp_path, tmp_path / "landing")
    assert delivery.version.split("@")[0] == json.loads(v2[-1].read_text())["runInfo"]["runId"]
    assert delivery.version.split("@")[0] == _local(local_root).locate(PERIOD).version
    skipped = delivery.metadata["skippedIncompleteRuns"]
    assert v3[0].parent.name in skipped and "blob missing" in skipped
    assert v4[0].parent.name in skipped and "bytes, manifest says" in skipped
    assert delivery.metadata["runsComplete"] == "2"
    # Only the chosen run's blobs were downloaded.
    assert {f.relpath.rsplit("/", 1)[0] for f in delivery.files} == {delivery.metadata["run"]}


def test_same_snapshot_on_repull_and_new_one_after_newer_run(env: int, tmp_path: Path) -> None:
    lines = _lines()
    local_root = tmp_path / "export"
    azure.write(lines.slice(0, 4), PERIOD, local_root, export_name=EXPORT, version=1)
    _upload(env, "repull", local_root)
    conn, landing = _remote("repull"), tmp_path / "landing"

    first, _ = _extract(conn, tmp_path, landing)
    stamp = {p: p.stat().st_mtime_ns for p in landing.rglob("*")}
    again, _ = _extract(conn, tmp_path, landing)
    assert again.id == first.id
    assert {p: p.stat().st_mtime_ns for p in landing.rglob("*")} == stamp  # nothing written

    azure.write(lines, PERIOD, local_root, export_name=EXPORT, version=2)
    _upload(env, "repull", local_root)
    newer, delivery = _extract(conn, tmp_path, landing)
    assert newer.id != first.id and newer.version != first.version
    assert _snapshot_dirs(landing) == sorted([first.id, newer.id])
    old = open_snapshot(landing, first.id)  # the old snapshot stays readable
    assert _normalize(conn, old.id, old.dir, old.files).num_rows == 4
    assert _normalize(conn, newer.id, newer.dir, newer.files).num_rows == 7
    assert delivery.metadata["runsComplete"] == "2"


def test_period_without_export_fails(env: int, tmp_path: Path) -> None:
    azure.write(_lines(), PERIOD, tmp_path / "export", export_name=EXPORT)
    _upload(env, "periods", tmp_path / "export")
    staging = tmp_path / "staging"
    with pytest.raises(SourceError, match=r"no export run for 2026-09 .*20260901-YYYYMMDD"):
        _remote("periods").fetch(Period(2026, 9), staging)


def test_missing_container_fails_fast(env: int, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(SourceError) as e:
        _remote("no-such-container").fetch(PERIOD, tmp_path / "staging")
    assert time.perf_counter() - t0 < 2  # not retried
    assert "'no-such-container'" in str(e.value) and "not found" in str(e.value)
    assert e.value.source == "azure/billing"


def test_wrong_key_fails_fast_without_the_key(
    azurite: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    azure.write(_lines(), PERIOD, tmp_path / "export", export_name=EXPORT)
    _upload(azurite, "wrongkey", tmp_path / "export")
    with FaultProxy(azurite, lambda *_: False) as proxy:
        monkeypatch.setenv(ENV, _conn_str(proxy.port, WRONG_KEY))
        caplog.set_level(logging.DEBUG)
        with pytest.raises(SourceError) as e:
            _remote("wrongkey").fetch(PERIOD, tmp_path / "staging")
        assert proxy.requests == 1  # a 403 is not retried
    msg = str(e.value)
    assert "access denied" in msg and "'wrongkey'" in msg and f"${ENV}" in msg
    for secret in (WRONG_KEY, WRONG_KEY[:16], KEY[:16]):
        assert secret not in msg and secret not in caplog.text and secret not in repr(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(SourceError, match=f"environment variable {ENV} .* is not set"):
        _remote("anything").fetch(PERIOD, tmp_path / "staging")


def test_sas_token_from_env(
    azurite: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = _lines()
    azure.write(lines, PERIOD, tmp_path / "export", export_name=EXPORT)
    _upload(azurite, "sastoken", tmp_path / "export")
    sas = generate_container_sas(ACCOUNT, "sastoken", account_key=KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    monkeypatch.setenv("REVSHARE_TEST_AZURE_SAS", sas)
    conn = _remote("sastoken", connection_string_env=None,
                   account_url=f"http://127.0.0.1:{azurite}/{ACCOUNT}",
                   sas_token_env="REVSHARE_TEST_AZURE_SAS")  # fmt: skip
    caplog.set_level(logging.DEBUG)  # the SDK logs requests; its policy must redact the SAS
    snap, delivery = _extract(conn, tmp_path, tmp_path / "landing")
    assert _totals(_normalize(conn, snap.id, snap.dir, snap.files)) == _expected_totals(lines)
    assert "sig=" not in json.dumps(delivery.metadata)
    assert sas.split("sig=")[1][:12] not in caplog.text
    # A SAS for another container is refused at once, and the token is not echoed.
    other = generate_container_sas(ACCOUNT, "elsewhere", account_key=KEY,
                                   permission=ContainerSasPermissions(read=True, list=True),
                                   expiry=datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    monkeypatch.setenv("REVSHARE_TEST_AZURE_SAS", other)
    with pytest.raises(SourceError, match="access denied") as e:
        conn.fetch(PERIOD, tmp_path / "staging2")
    assert other.split("sig=")[1][:12] not in str(e.value)
    assert other.split("sig=")[1][:12] not in caplog.text


def test_transient_errors_are_retried(
    azurite: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines = _lines()
    azure.write(lines, PERIOD, tmp_path / "export", export_name=EXPORT)
    _upload(azurite, "flaky", tmp_path / "export")
    monkeypatch.setenv(ENV, _conn_str(azurite))
    direct, _ = _extract(_remote("flaky"), tmp_path, tmp_path / "landing")

    # The first listing and the first download of every blob answer 503 ServerBusy.
    def fail(method: str, path: str, n: int) -> bool:
        return n == 1 and method == "GET" and (path.endswith(".csv.gz") or path.endswith(
            ".json") or path == "/devstoreaccount1/flaky")  # fmt: skip

    with FaultProxy(azurite, fail) as proxy:
        monkeypatch.setenv(ENV, _conn_str(proxy.port))
        caplog.set_level(logging.WARNING, logger="connectors.azure_cost.remote")
        snap, _ = _extract(_remote("flaky"), tmp_path, tmp_path / "landing")
    assert len(proxy.faults) >= 3  # listing, manifest, data part
    assert snap.id == direct.id  # same bytes, same snapshot as without faults
    assert caplog.text.count("ServerBusy") == len(proxy.faults)

    # A server that stays busy: the error names the container and the attempts, in bounded time.
    with FaultProxy(azurite, lambda *_: True) as proxy:
        monkeypatch.setenv(ENV, _conn_str(proxy.port))
        t0 = time.perf_counter()
        with pytest.raises(SourceError, match=r"'flaky'.*after 5 attempt\(s\).*HTTP 503"):
            _remote("flaky").fetch(PERIOD, tmp_path / "staging-busy")
        assert proxy.requests == 5 and time.perf_counter() - t0 < 5
