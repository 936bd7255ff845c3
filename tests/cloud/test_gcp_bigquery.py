"""Google Cloud billing export pulled from BigQuery (bqemulator) through the official client.

generator -> emulator table (nested schema, loaded with load_table_from_file) -> fetch ->
land -> normalize, compared with the local read of the very files that were loaded. The
emulator is a real local server (REST over HTTP), started once for the module; a tiny local
proxy in front of it answers 503 on chosen requests to prove retries, and counts requests to
prove that permanent errors fail fast.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pydantic
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from connectors.base import NormalizeContext, SourceError
from connectors.gcp_billing import GcpBillingConnector, GcpBillingSettings
from revshare.db import connect
from revshare.generate import gcp as writer
from revshare.periods import Period
from revshare.stages import extract
from revshare.store import Snapshot
from tests.connectors.test_gcp_billing import _lines

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("REVSHARE_TOOLS_DIR", REPO / "var" / "tools"))
EMU = TOOLS / "bqemulator"
PROJECT = "revshare-test"
DATASET = "billing"
TABLE = "gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C"
P = Period(2025, 5)
SCHEMA = [bigquery.SchemaField.from_api_repr(f) for f in writer.BQ_SCHEMA]
LINEAGE = ("x_SnapshotId", "x_SourceFile", "x_SourceRow", "x_NativeLineId")
LABELS = [{"key": "team", "value": "llm"}, {"key": "env", "value": "prod"}]


# -- the emulator ---------------------------------------------------------------------------


@dataclass
class Emulator:
    url: str
    client: bigquery.Client


def _install_extensions(home: Path) -> None:
    """bqemulator runs INSTALL/LOAD spatial (and avro) at start and cannot download them here:
    install them from the wheels in its venv into a private $HOME, never the user's."""
    site = next((EMU / "lib").glob("python3*/site-packages"))
    paths = sorted(site.glob("duckdb_extension_*/extensions/v*/*.duckdb_extension"))
    if not any(p.name == "spatial.duckdb_extension" for p in paths):
        pytest.fail(f"duckdb spatial extension missing in {site}: run `make tools`")
    code = "import duckdb, sys\nc = duckdb.connect()\nfor p in sys.argv[1:]: c.install_extension(p)"
    env = {**os.environ, "HOME": str(home)}
    subprocess.run(
        [str(EMU / "bin" / "python"), "-c", code, *map(str, paths)],
        env=env, check=True, timeout=60, capture_output=True,
    )  # fmt: skip


def _wait_for_port(log: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"bqemulator exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        m = re.search(r'"port": (\d+), "event": "rest\.listen"', log.read_text())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    pytest.fail(f"bqemulator did not start in time:\n{log.read_text()[-3000:]}")


def _wait_until_answers(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(
                f"{url}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2
            ):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    exe = EMU / "bin" / "bqemulator"
    if not exe.exists():
        pytest.fail(f"BigQuery emulator not found at {exe}: run `make tools`")
    work = tmp_path_factory.mktemp("bqemulator")
    home = work / "home"
    home.mkdir()
    _install_extensions(home)
    log = work / "emulator.log"
    cmd = [str(exe), "start", "--rest-host", "127.0.0.1", "--rest-port", "0",
           "--grpc-port", "0", "--project", PROJECT, "--ephemeral",
           "--log-format", "json", "--log-level", "info"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=work, env={**os.environ, "HOME": str(home)}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{_wait_for_port(log, proc, deadline)}"
        _wait_until_answers(url, deadline)
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=url),
        )
        client.create_dataset(DATASET)
        yield Emulator(url, client)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the emulator's process group, then kill it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


# -- a proxy that fails on purpose ----------------------------------------------------------


@dataclass
class Proxy:
    """Forwards to the emulator; answers 503 to requests matching a rule while it has budget."""

    url: str
    server: ThreadingHTTPServer
    #: (method, path regex) -> how many more requests to fail
    fail: dict[tuple[str, str], int] = field(default_factory=dict)
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, status in self.seen if status == 503]


_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "proxy-connection", "content-length", "accept-encoding"}  # fmt: skip


def _handler(state: list[Proxy], upstream: str) -> type[BaseHTTPRequestHandler]:
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _any(self) -> None:
            proxy = state[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            with proxy.lock:
                rule = next(
                    (k for k, n in proxy.fail.items()
                     if n > 0 and k[0] == self.command and re.search(k[1], path)),
                    None,
                )  # fmt: skip
                if rule is not None:
                    proxy.fail[rule] -= 1
            if rule is not None:
                payload = json.dumps({"error": {"code": 503, "message": "proxy says later",
                                                "status": "UNAVAILABLE"}}).encode()  # fmt: skip
                self._reply(503, {"Content-Type": "application/json"}, payload)
            else:
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
                self._reply(resp.status, out, data)
            with proxy.lock:
                proxy.seen.append((self.command, path, 503 if rule else 200))

        def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    return Handler


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[Proxy]:
    state: list[Proxy] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, emulator.url))
    state.append(Proxy(f"http://127.0.0.1:{server.server_address[1]}", server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


# -- data ------------------------------------------------------------------------------------


def _create(emulator: Emulator, table: str) -> str:
    """The export table: nested schema, day-partitioned on export_time (the emulator sets
    _PARTITIONTIME to the load time and takes no partition decorators, so the ingestion-time
    form of the real export cannot be reproduced; a column-partitioned table exercises the same
    pruning filter on a column)."""
    t = bigquery.Table(f"{PROJECT}.{DATASET}.{table}", schema=SCHEMA)
    t.time_partitioning = bigquery.TimePartitioning(type_="DAY", field="export_time")
    emulator.client.create_table(t)
    return t.table_id


def _load(emulator: Emulator, table: str, files: list[Path]) -> None:
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=SCHEMA)
    for f in files:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rb") as fh:  # the emulator takes plain NDJSON, not gzip
            emulator.client.load_table_from_file(
                fh, f"{PROJECT}.{DATASET}.{table}", job_config=config
            ).result()


def _first_row(path: Path) -> dict:
    with gzip.open(path, "rt") as fh:
        return json.loads(fh.readline())


def _generated(root: Path) -> dict[Period, list[Path]]:
    """Three invoice months as the generator writes them; returns each month's data files."""
    out = {}
    for period, late in ((P.prev(), False), (P, True), (P.next(), False)):
        writer.write(_lines(period, late=late), period, root, table=TABLE)
        out[period] = sorted(root.glob(f"{TABLE}/invoice_month={period.compact}/*.json.gz"))
    return out


@dataclass
class Loaded:
    root: Path  # the generator's files, read by the local form
    table: str


@pytest.fixture(scope="module")
def loaded(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    root = tmp_path_factory.mktemp("generated") / "billing_export"
    files = _generated(root)
    # The generator leaves labels empty: add a shard with one row whose REPEATED RECORDs at
    # every depth hold entries (labels, project.labels, tags, two credits).
    row = _first_row(files[P][0])
    row.update(
        cost=2.5,
        cost_at_list=2.5,
        labels=LABELS,
        project={**row["project"], "labels": [{"key": "cost-center", "value": "42"}]},
        tags=[{"key": "env", "value": "prod", "inherited": True, "namespace": "123"}],
        credits=[
            {"name": "CUD", "amount": -0.25, "full_name": "Committed use discount",
             "id": "CUD-1", "type": "COMMITTED_USAGE_DISCOUNT"},
            {"name": "Promo", "amount": -0.000000000001, "full_name": None,
             "id": "P-1", "type": "PROMOTION"},
        ],
    )  # fmt: skip
    extra = files[P][0].with_name(f"{TABLE}-000000000001.json.gz")
    with gzip.open(extra, "wt") as fh:
        fh.write(json.dumps(row) + "\n")
    files[P].append(extra)
    # An April row (a correction) exported on 2 May: inside May's partition window.
    april = _first_row(files[P.prev()][0])
    april.update(export_time="2025-05-02 10:00:00 UTC", cost_type="adjustment", credits=[])
    extra = files[P.prev()][0].with_name(f"{TABLE}-000000000001.json.gz")
    with gzip.open(extra, "wt") as fh:
        fh.write(json.dumps(april) + "\n")
    files[P.prev()].append(extra)
    _create(emulator, TABLE)
    _load(emulator, TABLE, [f for fs in files.values() for f in fs])
    return Loaded(root, TABLE)


def _remote(url: str, table: str = TABLE, **kw: object) -> GcpBillingConnector:
    settings = GcpBillingSettings(
        type="gcp_billing", project=PROJECT, dataset=DATASET, table=table, api_endpoint=url,
        retry_base_delay=0.01, **kw,
    )  # fmt: skip
    return GcpBillingConnector(settings, data_dir=Path("/nonexistent"), source_name="gcp/billing")


def _local(root: Path) -> GcpBillingConnector:
    settings = GcpBillingSettings(type="gcp_billing", path=str(root), table=TABLE)
    return GcpBillingConnector(settings, data_dir=root, source_name="gcp/billing")


def _extract(conn: GcpBillingConnector, tmp: Path, period: Period = P) -> Snapshot:
    """The core's extract: fetch into a staging folder, land, remove the staging folder."""
    return extract(conn, period, tmp / "landing")


def _normalize(conn: GcpBillingConnector, ctx: NormalizeContext) -> pa.Table:
    return connect().sql(conn.normalize_sql(ctx)).to_arrow_table()


def _snap_rows(conn: GcpBillingConnector, snap: Snapshot, period: Period = P) -> pa.Table:
    return _normalize(conn, NormalizeContext("gcp", period, snap.id, snap.dir, snap.files))


def _local_rows(root: Path, period: Period = P) -> pa.Table:
    conn = _local(root)
    files = tuple(sorted(f.relpath for f in conn.locate(period).files))
    return _normalize(conn, NormalizeContext("gcp", period, "local", root, files))


def _comparable(table: pa.Table) -> list[dict]:
    """Rows without lineage that depends on row order; sorted. Everything else must match."""
    rows = table.drop_columns(list(LINEAGE)).to_pylist()
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _totals(table: pa.Table) -> dict[str, D]:
    con = connect()
    con.register("t", table)
    return dict(con.execute("SELECT ChargeCategory, sum(BilledCost) FROM t GROUP BY 1").fetchall())


# -- tests -----------------------------------------------------------------------------------


def test_round_trip_equals_local_read(emulator: Emulator, loaded: Loaded, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    conn = _remote(emulator.url)
    snap = _extract(conn, tmp_path)
    pulled = _snap_rows(conn, snap)
    local = _local_rows(loaded.root)
    # 7 generated export rows + the labelled one; 4 + 2 nested credits
    assert pulled.num_rows == local.num_rows == 14
    assert pulled.schema == local.schema
    assert _comparable(pulled) == _comparable(local)
    # exact decimal totals, against the generator's own figures and the added row
    want: dict[str, D] = {"Usage": D("2.5"), "Credit": D("-0.250000000001")}
    for r in _lines(P).to_pylist():
        cat = {"usage": "Usage", "tax": "Tax", "credit": "Credit", "refund": "Credit"}[r["kind"]]
        want[cat] = want.get(cat, D(0)) + r["cost"]
    assert _totals(pulled) == want
    tags = {t for t in pulled.column("Tags").to_pylist() if t is not None}
    assert tags == {'{"team":"llm","env":"prod"}'}
    # Nested REPEATED RECORDs the mapping does not read still arrive whole.
    staged = (
        connect()
        .execute(
            "SELECT project.labels, tags FROM read_json(?) WHERE len(labels) > 0",
            [str(snap.file(snap.files[0]))],
        )
        .fetchall()
    )
    assert staged == [
        (
            [{"key": "cost-center", "value": "42"}],
            [{"key": "env", "value": "prod", "inherited": True, "namespace": "123"}],
        )
    ]
    assert snap.files == (
        f"{TABLE}/invoice_month={P.compact}/{TABLE}-000000000000.json.gz",
        f"{TABLE}/schema.json",
    )
    assert snap.version == (
        f"bigquery:{PROJECT}.{DATASET}.{TABLE}:{P.compact}:rows=8"
        ":last_export=2025-05-07 05:00:00+00"
    )
    print(f"\nround trip (fetch+land+normalize): {time.perf_counter() - t0:.2f} s")


def test_only_the_invoice_month_is_pulled(emulator: Emulator, loaded: Loaded, tmp_path: Path):
    conn = _remote(emulator.url)
    delivery = conn.fetch(P, tmp_path / "staging")
    assert delivery.metadata["partition_filter"] == "export_time"
    assert delivery.metadata["read_api"] == "rest"
    data = [f.path for f in delivery.files if f.relpath.endswith(".json.gz")]
    con = connect()
    months = con.execute(
        "SELECT invoice.month, count(*) FROM read_json(?, format='newline_delimited') GROUP BY 1",
        [[str(p) for p in data]],
    ).fetchall()
    # The table holds April, May and June; June's first rows and an April correction exported
    # on 2 May lie inside May's partition window, yet only invoice month 202505 comes back.
    assert months == [(P.compact, 8)]
    assert int(delivery.metadata["table_rows"]) > 8
    nxt = _snap_rows(conn, _extract(conn, tmp_path / "june", P.next()), P.next())
    assert _comparable(nxt) == _comparable(_local_rows(loaded.root, P.next()))


def test_partition_window_prunes(emulator: Emulator, tmp_path: Path) -> None:
    """A row of the month exported far outside the window is not read, unless the window
    (partition_slack_days) is widened: the filter really is on the partitioning column."""
    table = _create(emulator, "window_test")
    files = _generated(tmp_path / "gen")[P]
    late = tmp_path / "late.json"
    row = _first_row(files[0])
    row["export_time"] = "2025-07-20 00:00:00 UTC"  # 50 days after May ends
    late.write_text(json.dumps(row) + "\n")
    _load(emulator, table, [*files, late])
    narrow = _remote(emulator.url, table).fetch(P, tmp_path / "s1")
    wide = _remote(emulator.url, table, partition_slack_days=55).fetch(P, tmp_path / "s2")
    assert (narrow.metadata["rows"], wide.metadata["rows"]) == ("7", "8")


def test_same_snapshot_on_repull_new_one_after_correction(
    emulator: Emulator, tmp_path: Path
) -> None:
    table = _create(emulator, "restate_test")
    files = _generated(tmp_path / "gen")
    _load(emulator, table, files[P] + files[P.next()])
    conn = _remote(emulator.url, table)
    first = _extract(conn, tmp_path / "a")
    again = _extract(conn, tmp_path / "a")
    assert again.id == first.id and again.dir == first.dir
    assert sorted(p.name for p in (tmp_path / "a" / "landing").iterdir()) == [first.id]

    # Google appends a correction to the open month: a new row, nothing rewritten.
    row = _first_row(files[P][0])
    row.update(
        cost=-1.25,
        cost_at_list=-1.25,
        cost_type="adjustment",
        credits=[],
        export_time="2025-06-02 09:00:00 UTC",  # after the month ended, inside the window
        adjustment_info={
            "id": "adj-1",
            "description": "Correction: overbilled tokens",
            "mode": "MANUAL_ADJUSTMENT",
            "type": "USAGE_CORRECTION",
        },
    )
    fix = tmp_path / "fix.json"
    fix.write_text(json.dumps(row) + "\n")
    _load(emulator, table, [fix])
    after = _extract(conn, tmp_path / "a")
    assert after.id != first.id
    assert after.version is not None and ":rows=8:" in after.version
    old, new = _totals(_snap_rows(conn, first)), _totals(_snap_rows(conn, after))
    assert new["Credit"] == old["Credit"] - D("1.25")
    assert {k: v for k, v in new.items() if k != "Credit"} == {
        k: v for k, v in old.items() if k != "Credit"
    }
    assert first.dir.is_dir()  # the old snapshot stays readable


def test_missing_dataset_or_table_fails_fast(emulator: Emulator, proxy: Proxy) -> None:
    conn = GcpBillingConnector(
        GcpBillingSettings(type="gcp_billing", project=PROJECT, dataset="no_such_dataset",
                           table=TABLE, api_endpoint=proxy.url),
        data_dir=Path("/nonexistent"), source_name="gcp/billing",
    )  # fmt: skip
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match=rf"dataset {PROJECT}\.no_such_dataset not found"):
        conn.fetch(P, Path("/nonexistent/staging"))
    assert len(proxy.seen) == 2  # GET table, GET dataset: no retries
    with pytest.raises(SourceError, match=rf"table {PROJECT}\.{DATASET}\.no_such_table not found"):
        _remote(proxy.url, "no_such_table").fetch(P, Path("/nonexistent/staging"))
    assert len(proxy.seen) == 4
    assert time.perf_counter() - t0 < 5


def test_invalid_names_rejected_before_any_request(proxy: Proxy) -> None:
    base = dict(type="gcp_billing", project=PROJECT, dataset=DATASET, table=TABLE)
    for bad in (
        {"table": "x` WHERE 1=1; DROP TABLE y --"},
        {"table": "billing.export"},
        {"dataset": "a-b"},
        {"project": "Bad_Project"},
        {"api_endpoint": "ftp://127.0.0.1:1"},
        {"project": None},  # dataset without project: neither mode
    ):
        with pytest.raises(pydantic.ValidationError):
            GcpBillingSettings(**{**base, **bad})
    # Settings built without validation still never reach the server with a bad name.
    sneaky = GcpBillingSettings.model_construct(
        **{**base, "table": "t`; SELECT 1 --", "api_endpoint": proxy.url}
    )
    conn = GcpBillingConnector(sneaky, data_dir=Path("/nonexistent"), source_name="gcp/billing")
    with pytest.raises(SourceError, match="not a BigQuery table name"):
        conn.fetch(P, Path("/nonexistent/staging"))
    assert proxy.seen == []


def test_transient_errors_are_retried(
    emulator: Emulator, loaded: Loaded, proxy: Proxy, tmp_path: Path
) -> None:
    proxy.fail = {
        ("GET", r"/tables/[^/]+$"): 2,  # table metadata
        ("POST", r"/projects/[^/]+/jobs$"): 1,  # the query job
        ("GET", r"/queries/"): 1,  # the result pages
    }
    via_proxy = _extract(_remote(proxy.url), tmp_path / "p")
    direct = _extract(_remote(emulator.url), tmp_path / "d")
    assert len(proxy.failed()) == 4 and all(n == 0 for n in proxy.fail.values())
    assert via_proxy.id == direct.id  # same bytes, same snapshot


def test_persistent_unavailability_gives_up(proxy: Proxy) -> None:
    proxy.fail = {("GET", r"/tables/"): 100}
    conn = _remote(proxy.url, retry_attempts=3)
    with pytest.raises(SourceError, match=r"unavailable while reading table .* after 3 attempts"):
        conn.fetch(P, Path("/nonexistent/staging"))
    assert len(proxy.seen) == 3


def test_missing_credentials_fail_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Google's endpoint (no api_endpoint) uses the standard chain; a broken chain is reported
    at once, without a request and without echoing the credentials file."""
    secret_path = tmp_path / "no-such-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(secret_path))
    settings = GcpBillingSettings(type="gcp_billing", project=PROJECT, dataset=DATASET, table=TABLE)
    conn = GcpBillingConnector(settings, data_dir=tmp_path, source_name="gcp/billing")
    with pytest.raises(SourceError, match="no usable Google credentials") as err:
        conn.fetch(P, tmp_path / "staging")
    assert str(secret_path) not in str(err.value)


def test_month_without_rows_is_an_error(emulator: Emulator, loaded: Loaded, tmp_path: Path):
    with pytest.raises(SourceError, match=r"no rows for invoice month 202508 in .*6A7B8C"):
        _remote(emulator.url).fetch(Period(2025, 8), tmp_path / "staging")
