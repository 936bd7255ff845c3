"""CUR 2.0 and the AWS FOCUS export pulled from S3 with boto3, against a real moto server.

Every pull goes through a tiny local HTTP proxy in front of moto, which records each request
(to prove which objects were read) and can inject faults: 503 SlowDown answers, a truncated
body, a listing that reports another size. Nothing is patched in process: boto3 talks HTTP.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, in_one_order
from servers import moto  # noqa: F401 (fixtures)

from connectors.aws_cur2 import AwsCur2Connector, AwsCur2Settings
from connectors.base import Connector, NormalizeContext, SourceError
from connectors.focus import FocusConnector, FocusSettings
from revshare.generate import aws
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.stages import extract
from revshare.store import Snapshot, land

pytestmark = pytest.mark.integration

MAY = Period(2025, 5)
SEP = Period(2024, 9)
EXPORT = "revshare-bedrock"
FOCUS_EXPORT = "revshare-focus"
PREFIX = "exports/cur2"
SECRET = "wJalrXUtnFEMI-test-secret-never-printed"
SKU = "USE1-Llama3-3-70B-input-tokens"
CATEGORY = {"usage": "Usage", "tax": "Tax", "credit": "Credit", "refund": "Credit"}


Headers = list[tuple[str, str]]
Mutate = Callable[[str, str, int, Headers, bytes], tuple[int, Headers, bytes]]


class Proxy:
    """Forwards to moto; logs requests; answers 503 SlowDown ``fail[needle]`` times for paths
    containing ``needle``; ``mutate`` may rewrite a response (status, headers, body)."""

    SLOWDOWN = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.log: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}
        self.mutate: Mutate | None = None
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.fail.clear()
            self.mutate = None

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.log if method is None or m == method]


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with proxy.lock:
                proxy.log.append((self.command, self.path))
                needle = next((k for k, n in proxy.fail.items() if k in self.path and n > 0), None)
                if needle is not None:
                    proxy.fail[needle] -= 1
            if needle is not None:
                self._reply(503, [("Content-Type", "application/xml")], Proxy.SLOWDOWN)
                return
            conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                headers = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower() not in ("transfer-encoding", "connection", "content-length")
                ]
                status = resp.status
                if self.command == "HEAD":  # no body, but the object's size must pass through
                    headers.append(("Content-Length", resp.getheader("Content-Length", "0")))
            finally:
                conn.close()
            if proxy.mutate is not None:
                status, headers, data = proxy.mutate(self.command, self.path, status, headers, data)
            self._reply(status, headers, data)

        def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

    return Handler


@pytest.fixture(scope="module")
def proxy_server(moto: str) -> Iterator[tuple[Proxy, str]]:
    proxy = Proxy(moto)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(proxy_server: tuple[Proxy, str]) -> Proxy:
    proxy_server[0].reset()
    return proxy_server[0]


@pytest.fixture
def proxy_url(proxy_server: tuple[Proxy, str]) -> str:
    return proxy_server[1]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only; no user profile or instance metadata."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTREVSHARE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3(moto: str) -> object:
    """The official client, straight to moto (not through the proxy), to set the scene."""
    return boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )


@pytest.fixture
def bucket(s3: object) -> str:
    name = f"revshare-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


# -- helpers -----------------------------------------------------------------------------------


def _upload(s3: object, bucket: str, root: Path, prefix: str = PREFIX) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(root).as_posix()}")


def _cur2(bucket: str, endpoint: str, **kw: object) -> AwsCur2Connector:
    settings = AwsCur2Settings(
        type="aws_cur2",
        path=f"s3://{bucket}/{PREFIX}/",
        export_name=EXPORT,
        endpoint_url=endpoint,
        region="us-east-1",
        retry_base_delay=0.01,
        timeout_seconds=10,
        **kw,
    )
    return AwsCur2Connector(settings, Path("/nonexistent"), "aws/billing")


def _pull(conn: Connector, period: Period, landing: Path) -> Snapshot:
    """The core's extract: fetch into a staging folder, land, remove the staging folder."""
    snap = extract(conn, period, landing)
    assert [p.name for p in landing.iterdir() if p.name.startswith(".")] == [], "staging left"
    return snap


def _landed(landing: Path) -> list[str]:
    """Snapshots in the landing root (staging folders are dot-named and must be gone)."""
    return sorted(p.name for p in landing.iterdir()) if landing.exists() else []


def _read(conn: Connector, period: Period, root: Path, files: tuple[str, ...]) -> pa.Table:
    ctx = NormalizeContext("aws", period, "snap-cmp", root, tuple(sorted(files)))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(conn.normalize_sql(ctx)).to_arrow_table()
    finally:
        con.close()


def _totals(table: pa.Table, key: str, value: str) -> dict[str, D]:
    out: dict[str, D] = {}
    for k, v in zip(table[key].to_pylist(), table[value].to_pylist(), strict=True):
        out[k] = out.get(k, D(0)) + v
    return out


def _line(i: int, kind: str, cost: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "line_id": f"aws-{kind}-{i}",
        "partner": "aws",
        "account_id": "111122223333",
        "account_name": "Acme Corp",
        "currency": "USD",
        "usage_start": datetime(2025, 5, 1 + i % 28, i % 24, tzinfo=UTC),
        "usage_end": datetime(2025, 5, 1 + i % 28, i % 24, 59, 59, tzinfo=UTC),
        "billing_period": "2025-05",
        "region": "us-east-1",
        "kind": kind,
        "licensed": kind == "usage",
        "service": "AmazonBedrock",
        "sku_key": SKU if kind != "tax" else "Tax",
        "sku_id": None,
        "quantity": D("1234.5") if kind == "usage" else D(0),
        "unit_price": D("0.00072") if kind == "usage" else D(0),
        "cost": D(cost),
        "credits": None,
        "credit_price": None,
        "parent_line_id": None,
    }
    row.update(kw)
    return row


def _month(extra: list[dict[str, object]] | None = None) -> pa.Table:
    money = ["0.1", "0.000000000001", "123.456789012345", "0.888840000000", "99999.99", "1e-7"]
    rows = [_line(i, "usage", c) for i, c in enumerate(money)]
    rows += [
        _line(10, "tax", "4.71"),
        _line(11, "credit", "-0.0888840001", parent_line_id="aws-usage-3"),
        _line(12, "refund", "-12.345678901234", parent_line_id="aws-usage-2"),
        *(extra or []),
    ]
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


def _cur2_export(root: Path, bucket: str, lines: pa.Table, version: int = 1) -> list[Path]:
    return aws.write(
        lines, MAY, root, export_name=EXPORT, version=version, bucket=bucket, prefix=PREFIX
    )


# -- CUR 2.0 -----------------------------------------------------------------------------------


def test_cur2_round_trip_equals_local_read(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 3)  # several parts, so the listing pages
    april = _line(20, "usage", "5.5", billing_period="2025-04",
                  usage_start=datetime(2025, 4, 30, 23, tzinfo=UTC),
                  usage_end=datetime(2025, 4, 30, 23, 59, tzinfo=UTC))  # fmt: skip
    lines = _month([april])
    mirror = tmp_path / "mirror"
    written = _cur2_export(mirror, bucket, lines)
    _upload(s3, bucket, mirror)
    conn = _cur2(bucket, proxy_url, list_page_size=2)

    snap = _pull(conn, MAY, tmp_path / "landing")
    delivery = conn.fetch(MAY, tmp_path / "staging")  # for its version and metadata

    assert snap.version == delivery.version == aws.execution_id(EXPORT, MAY, 1)
    assert delivery.metadata["source"] == f"s3://{bucket}/{PREFIX}"
    assert delivery.metadata["manifestETag"].strip('"')
    want_files = sorted(p.relative_to(mirror).as_posix() for p in written)
    assert list(snap.files) == want_files
    # Paginated: 4 data files in one execution folder, 2 keys a page.
    lists = [p for p in proxy.paths("GET") if "list-type=2" in p]
    assert len(lists) == 4  # two pulls and "continuation-token" in lists[1]

    remote = _read(conn, MAY, snap.dir, snap.files)
    local_conn = AwsCur2Connector(
        AwsCur2Settings(type="aws_cur2", path=str(mirror), export_name=EXPORT), mirror, "aws/b"
    )
    local_delivery = local_conn.locate(MAY)
    local = _read(local_conn, MAY, mirror, tuple(f.relpath for f in local_delivery.files))
    assert in_one_order(remote).equals(in_one_order(local))
    # Same bytes, same layout, same version: the very snapshot a local mirror would give.
    local_snap = land(local_delivery.files, tmp_path / "landing-local", source="aws/b",
                      version=local_delivery.version)  # fmt: skip
    assert local_snap.id == snap.id

    # Period filter: the stray April line is in the files but not in May's rows.
    assert remote.num_rows == lines.num_rows - 1
    assert "aws-usage-20" not in remote["x_NativeLineId"].to_pylist()
    want: dict[str, D] = {}
    for kind, cost, bp in zip(lines["kind"].to_pylist(), lines["cost"].to_pylist(),
                              lines["billing_period"].to_pylist(), strict=True):  # fmt: skip
        if bp == "2025-05":
            want[CATEGORY[kind]] = want.get(CATEGORY[kind], D(0)) + cost
    assert _totals(remote, "ChargeCategory", "BilledCost") == want


def test_cur2_newest_manifest_and_snapshots(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str
) -> None:
    mirror, landing = tmp_path / "mirror", tmp_path / "landing"
    _cur2_export(mirror, bucket, _month(), version=1)
    _upload(s3, bucket, mirror)
    conn = _cur2(bucket, proxy_url)

    snap1 = _pull(conn, MAY, landing)
    marker = snap1.dir / "_SNAPSHOT.json"
    before = (_landed(landing), marker.stat().st_mtime_ns)
    again = _pull(conn, MAY, landing)
    assert again.id == snap1.id
    assert (_landed(landing), marker.stat().st_mtime_ns) == before  # nothing new written

    restated = _month([_line(30, "usage", "7.25")]).to_pylist()
    restated[0]["cost"] = D("0.2")
    _cur2_export(mirror, bucket, pa.Table.from_pylist(restated, schema=GEN_LINES_SCHEMA), 2)
    _upload(s3, bucket, mirror)  # v1's execution folder stays in the bucket, as in AWS
    exec1, exec2 = (aws.execution_id(EXPORT, MAY, v) for v in (1, 2))
    proxy.reset()
    snap2 = _pull(conn, MAY, landing)

    assert snap2.version == exec2 and snap2.id != snap1.id
    assert _landed(landing) == sorted([snap1.id, snap2.id])
    assert not [p for p in proxy.paths() if exec1 in p], "the older execution must not be read"
    assert all(exec2 in f for f in snap2.files if f.endswith(".parquet"))
    new = _read(conn, MAY, snap2.dir, snap2.files)
    assert new.num_rows == 10
    assert _totals(new, "ChargeCategory", "BilledCost")["Usage"] == sum(
        (r["cost"] for r in restated if r["kind"] == "usage"), D(0)
    )
    old = _read(conn, MAY, snap1.dir, snap1.files)  # the old snapshot is still readable
    assert old.num_rows == 9 and D("0.1") in old["BilledCost"].to_pylist()


def test_missing_bucket_fails_fast(tmp_path: Path, proxy: Proxy, proxy_url: str) -> None:
    conn = _cur2("revshare-no-such-bucket", proxy_url)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="bucket revshare-no-such-bucket does not exist") as e:
        _pull(conn, MAY, tmp_path / "landing")
    assert time.monotonic() - t0 < 3
    assert len(proxy.log) == 1, "a permanent error is not retried"
    assert e.value.source == "aws/billing"
    assert SECRET not in str(e.value) and SECRET not in repr(conn.settings)
    assert _landed(tmp_path / "landing") == []


def test_missing_manifest_fails_fast(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str
) -> None:
    _cur2_export(tmp_path / "mirror", bucket, _month())
    _upload(s3, bucket, tmp_path / "mirror")
    with pytest.raises(SourceError, match="no Data Exports manifest") as e:
        _pull(_cur2(bucket, proxy_url), Period(2025, 4), tmp_path / "landing")
    key = f"{PREFIX}/{EXPORT}/metadata/BILLING_PERIOD=2025-04/{EXPORT}-Manifest.json"
    assert f"s3://{bucket}/{key}" in str(e.value)
    assert e.value.file == key.removeprefix(PREFIX + "/")
    assert len(proxy.log) == 1


def test_manifest_listing_an_absent_object(
    tmp_path: Path, s3: object, bucket: str, proxy_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 4)
    written = _cur2_export(tmp_path / "mirror", bucket, _month())
    _upload(s3, bucket, tmp_path / "mirror")
    gone = f"{PREFIX}/{written[1].relative_to(tmp_path / 'mirror').as_posix()}"
    s3.delete_object(Bucket=bucket, Key=gone)
    with pytest.raises(SourceError, match="does not exist: the delivery is incomplete") as e:
        _pull(_cur2(bucket, proxy_url), MAY, tmp_path / "landing")
    assert f"s3://{bucket}/{gone}" in str(e.value)
    assert _landed(tmp_path / "landing") == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("body", "wrote .* bytes but the object has .*: refusing a truncated download"),
        ("checksum", r"failed after 2 attempt\(s\): FlexibleChecksumError"),
        ("listing", "the listing says .* bytes but HEAD says"),
    ],
)
def test_object_of_the_wrong_size(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str, where: str,
    message: str,
) -> None:  # fmt: skip
    written = _cur2_export(tmp_path / "mirror", bucket, _month())
    _upload(s3, bucket, tmp_path / "mirror")
    name = written[0].name

    def mutate(method: str, path: str, status: int, headers: Headers, data: bytes):  # type: ignore[no-untyped-def]
        if where in ("body", "checksum") and method == "GET" and path.split("?")[0].endswith(name):
            if where == "body":  # a consistent but short answer: no checksum to betray it
                headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum")]
            return status, headers, data[:-100]
        if where == "listing" and "list-type=2" in path:
            return status, headers, re.sub(rb"<Size>(\d+)</Size>", rb"<Size>1\1</Size>", data)
        return status, headers, data

    proxy.mutate = mutate
    with pytest.raises(SourceError, match=message) as e:
        _pull(_cur2(bucket, proxy_url, retry_attempts=2), MAY, tmp_path / "landing")
    assert f"s3://{bucket}/{PREFIX}/{EXPORT}/data/" in str(e.value) and name in str(e.value)
    if where != "checksum":
        assert e.value.file and e.value.file.endswith(name)
    assert _landed(tmp_path / "landing") == []


def test_transient_503_is_retried(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    written = _cur2_export(tmp_path / "mirror", bucket, _month())
    _upload(s3, bucket, tmp_path / "mirror")
    proxy.fail = {"Manifest.json": 2, written[0].name: 1, "list-type=2": 1}
    snap = _pull(_cur2(bucket, proxy_url), MAY, tmp_path / "landing")
    assert snap.files == tuple(sorted(p.relative_to(tmp_path / "mirror").as_posix()
                                      for p in written))  # fmt: skip
    assert sum("Manifest.json" in p for p in proxy.paths("GET")) == 3
    assert sum("list-type=2" in p for p in proxy.paths("GET")) == 2
    assert "SlowDown (HTTP 503)" in caplog.text and SECRET not in caplog.text


def test_persistent_503_gives_up(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str
) -> None:
    _cur2_export(tmp_path / "mirror", bucket, _month())
    _upload(s3, bucket, tmp_path / "mirror")
    proxy.fail = {"Manifest.json": 100}
    with pytest.raises(SourceError, match=r"failed after 3 attempt\(s\): SlowDown") as e:
        _pull(_cur2(bucket, proxy_url, retry_attempts=3), MAY, tmp_path / "landing")
    assert f"s3://{bucket}/{PREFIX}/{EXPORT}/metadata" in str(e.value)
    assert len(proxy.log) == 3


def test_no_credentials_fails_fast(
    tmp_path: Path, proxy: Proxy, proxy_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SourceError, match="no AWS credentials found") as e:
        _pull(_cur2("revshare-any", proxy_url), MAY, tmp_path / "landing")
    assert "revshare-any" in str(e.value) and proxy.log == []


def test_manifest_pointing_outside_the_prefix_is_refused(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str
) -> None:
    _cur2_export(tmp_path / "mirror", bucket, _month())
    man = next((tmp_path / "mirror").rglob("*-Manifest.json"))
    doc = json.loads(man.read_text())
    doc["dataFiles"] = [u.replace(f"s3://{bucket}/", "s3://someone-elses-bucket/")
                        for u in doc["dataFiles"]]  # fmt: skip
    man.write_text(json.dumps(doc))
    _upload(s3, bucket, tmp_path / "mirror")
    with pytest.raises(SourceError, match="someone-elses-bucket"):
        _pull(_cur2(bucket, proxy_url), MAY, tmp_path / "landing")
    assert not [p for p in proxy.paths() if "someone-elses" in p]


# -- the AWS FOCUS export ----------------------------------------------------------------------

_MONEY = ("BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice",
          "EffectiveCost", "ListCost", "ListUnitPrice", "PricingQuantity")  # fmt: skip
_TIMES = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")


def _focus_rows(bump: str | None = None) -> pa.Table:
    """AWS rows of the FinOps sample as AWS's 'FOCUS 1.2 with AWS columns' Parquet types them:
    money as doubles, timestamps in milliseconds, the 1.2 additions and AWS's x_ columns."""
    sample = SHARED_DATA / "focus" / "focus_1_0_sample.csv"
    casts = ", ".join(
        [f"CAST({c} AS DOUBLE) AS {c}" for c in _MONEY]
        + [f"CAST(CAST({c} AS TIMESTAMP) AS TIMESTAMP_MS) AS {c}" for c in _TIMES]
    )
    first = f"CASE WHEN row_number() OVER () = 1 THEN {bump} ELSE BilledCost END" if bump else ""
    sql = (
        f"SELECT * EXCLUDE (Id) REPLACE ({casts}), 'Billing Account' AS BillingAccountType, "
        "CAST(NULL AS VARCHAR) AS InvoiceId, BillingCurrency AS PricingCurrency, "
        "replace(ServiceName, ' ', '') AS x_ServiceCode, SkuId AS x_UsageType, "
        "'Invoke' AS x_Operation "
        f"FROM (SELECT * REPLACE ({first or 'BilledCost'} AS BilledCost) FROM "
        f"read_csv('{sample}', all_varchar = true, nullstr = 'NULL') "
        "WHERE ProviderName = 'AWS')"
    )
    return duckdb.sql(sql).to_arrow_table()


def _focus_export(root: Path, bucket: str, table: pa.Table, version: int) -> list[Path]:
    """Lay ``table`` out as Data Exports delivers a FOCUS export (create-new mode, 2 parts)."""
    exec_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{FOCUS_EXPORT}/{SEP}/v{version}"))
    data = root / FOCUS_EXPORT / "data" / f"BILLING_PERIOD={SEP}" / exec_id
    data.mkdir(parents=True)
    half = table.num_rows // 2
    parts = [data / f"{FOCUS_EXPORT}-0000{i}.snappy.parquet" for i in (1, 2)]
    pq.write_table(table.slice(0, half), parts[0], compression="snappy")
    pq.write_table(table.slice(half), parts[1], compression="snappy")
    meta = root / FOCUS_EXPORT / "metadata" / f"BILLING_PERIOD={SEP}"
    meta.mkdir(parents=True, exist_ok=True)
    manifest = meta / f"{FOCUS_EXPORT}-Manifest.json"
    manifest.write_text(json.dumps({
        "executionId": exec_id,
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111122223333:export/{FOCUS_EXPORT}",
        "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        "dataFiles": [f"s3://{bucket}/{PREFIX}/{p.relative_to(root).as_posix()}" for p in parts],
        "additionalOutputFiles": [],
    }))  # fmt: skip
    return [*parts, manifest]


def test_focus_export_round_trip_and_newest_manifest(
    tmp_path: Path, s3: object, bucket: str, proxy: Proxy, proxy_url: str
) -> None:
    mirror, landing = tmp_path / "mirror", tmp_path / "landing"
    rows = _focus_rows()
    v1 = _focus_export(mirror, bucket, rows, 1)
    _upload(s3, bucket, mirror)
    conn = FocusConnector(
        FocusSettings(
            type="focus",
            path=f"s3://{bucket}/{PREFIX}",
            export_name=FOCUS_EXPORT,
            endpoint_url=proxy_url,
            region="us-east-1",
            sku_key_column="x_UsageType",
            retry_base_delay=0.01,
        ),
        Path("/nonexistent"),
        "aws/billing",
    )
    snap1 = _pull(conn, SEP, landing)
    local = FocusConnector(
        FocusSettings(type="focus", path=str(mirror), export_name=FOCUS_EXPORT,
                      sku_key_column="x_UsageType"), mirror, "aws/billing",
    )  # fmt: skip
    ld = local.locate(SEP)
    assert [f.relpath for f in ld.files] == list(snap1.files)
    assert snap1.version == ld.version == json.loads(v1[-1].read_text())["executionId"]

    got = _read(conn, SEP, snap1.dir, snap1.files)
    want = _read(local, SEP, mirror, tuple(f.relpath for f in ld.files))
    assert in_one_order(got).equals(in_one_order(want))
    assert got.num_rows == rows.num_rows == 942
    sample_total = duckdb.sql(
        f"SELECT sum(CAST(BilledCost AS DECIMAL(38,12))) FROM read_csv("
        f"'{SHARED_DATA / 'focus' / 'focus_1_0_sample.csv'}', all_varchar = true, "
        "nullstr = 'NULL') WHERE ProviderName = 'AWS'"
    ).fetchone()[0]
    assert sum(got["BilledCost"].to_pylist(), D(0)) == sample_total
    assert set(got["x_SkuKey"].to_pylist()) <= set(rows["x_UsageType"].to_pylist()) | {
        f"{c} (no SKU)" for c in rows["ChargeCategory"].to_pylist()
    }

    again = _pull(conn, SEP, landing)
    assert again.id == snap1.id

    _focus_export(mirror, bucket, _focus_rows(bump="'1000.5'"), 2)  # a restatement
    _upload(s3, bucket, mirror)
    proxy.reset()
    snap2 = _pull(conn, SEP, landing)
    assert snap2.id != snap1.id and snap2.version != snap1.version
    old_exec = v1[0].parent.name
    assert not [p for p in proxy.paths() if old_exec in p]
    new = _read(conn, SEP, snap2.dir, snap2.files)
    assert D("1000.5") in new["BilledCost"].to_pylist()
    assert new.num_rows == 942


def test_unknown_profile_fails_fast(tmp_path: Path, proxy: Proxy, proxy_url: str) -> None:
    with pytest.raises(SourceError, match="AWS profile 'revshare-nope' not found"):
        _pull(_cur2("revshare-any", proxy_url, profile="revshare-nope"), MAY, tmp_path / "l")
    assert proxy.log == []
