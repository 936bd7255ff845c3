"""Snowflake usage views pulled live with snowflake-connector-python, against fakesnow's server.

The generator's views are seeded into a real fakesnow HTTP server (``fakesnow -s``) with the
official client; the connector then pulls them through the same client and the result must
equal the local read of the generator's unload. Nothing is patched in process. Outages are
made by a tiny local HTTP proxy in front of fakesnow that answers 503 for a while (a restart
of fakesnow would not do: its server mode keeps databases in memory, ``-d`` is ignored there).

fakesnow lacks CURRENT_ACCOUNT() / CURRENT_REGION(); its CREATE FUNCTION turns a quoted body
into a constant (and reports an error while doing it), which the seed uses to stand them in.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import snowflake.connector
from conftest import REPO, in_one_order
from snowflake.connector import errors as sf

from connectors.base import NormalizeContext, SourceError
from connectors.snowflake_usage import SnowflakeUsageConnector, SnowflakeUsageSettings
from connectors.snowflake_usage.remote import is_transient
from revshare.db import connect
from revshare.generate import snowflake as writer
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.schema import BILLING_SCHEMA
from revshare.stages import extract
from revshare.store import Snapshot

pytestmark = pytest.mark.integration

MAR = Period(2025, 3)
ACCOUNT, REGION = "XY12345", "AWS_US_WEST_2"
PASSWORD_ENV = "REVSHARE_TEST_SF_PASSWORD"
PASSWORD = "Zebra-Quartz-7731-never-print-me"
VIEWS = {
    writer.CORTEX: "ACCOUNT_USAGE",
    writer.DAILY: "ORGANIZATION_USAGE",
    writer.RATES: "ORGANIZATION_USAGE",
}


# -- the server ---------------------------------------------------------------------------------


def _fakesnow() -> Path:
    tools = Path(os.environ.get("REVSHARE_TOOLS_DIR", REPO / "var" / "tools"))
    for cand in (REPO / ".venv" / "bin" / "fakesnow", tools / "fakesnow"):
        if cand.exists():
            return cand
    pytest.fail("fakesnow not found: run `make tools` (and `make install`)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeSnow:
    """``fakesnow -s`` on a free port, and a proxy in front of it that can play an outage."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxy: Proxy | None = None

    def start(self) -> None:
        log = (self.folder / "fakesnow.log").open("ab")
        self.proc = subprocess.Popen(
            [str(_fakesnow()), "-s", "--host", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.folder,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"fakesnow exited with {self.proc.returncode}; see {self.folder}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (404 for /)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("fakesnow did not answer within 60 s")
                time.sleep(0.1)
        self.proxy = Proxy(self.port)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def client(self) -> Any:
        return snowflake.connector.connect(
            user="seed",
            password="seed",
            account="fakesnow",
            host="127.0.0.1",
            port=self.port,
            protocol="http",
            paramstyle="qmark",
            login_timeout=20,
            network_timeout=20,
        )


class Proxy:
    """Forwards HTTP to fakesnow. ``arm(needle, seconds, skip)``: after letting ``skip``
    requests whose path contains ``needle`` through, answer 503 to them for ``seconds``."""

    def __init__(self, target: int) -> None:
        self.target, self.needle, self.skip = target, "", 0
        self.window, self.until = 0.0, 0.0
        self.answered_503 = 0
        self.bodies: list[bytes] = []  # request bodies, un-gzipped
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gz = self.headers.get("Content-Encoding") == "gzip"
                proxy.bodies.append(gzip.decompress(body) if gz else body)
                if proxy.refuse(self.path):
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                up = http.client.HTTPConnection("127.0.0.1", proxy.target, timeout=30)
                try:
                    skip = {"host", "content-length", "connection"}
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                    up.request(self.command, self.path, body=body, headers=headers)
                    resp = up.getresponse()
                    data = resp.read()
                finally:
                    up.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def arm(self, needle: str, seconds: float, skip: int = 0) -> None:
        self.needle, self.window, self.skip, self.until = needle, seconds, skip, 0.0
        self.answered_503 = 0

    def refuse(self, path: str) -> bool:
        if not self.needle or self.needle not in path:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        now = time.monotonic()
        if self.until == 0.0:
            self.until = now + self.window
        if now < self.until:
            self.answered_503 += 1
            return True
        self.needle = ""
        return False

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSnow]:
    srv = FakeSnow(tmp_path_factory.mktemp("fakesnow"))
    try:
        srv.start()
        with srv.client() as con:
            _stand_in_functions(con)
            seed(con, "SNOWFLAKE", lines())
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


# -- data ---------------------------------------------------------------------------------------


def _line(n: int, when: datetime, **kw: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(GEN_LINES_SCHEMA.names)
    row.update(
        line_id=f"sf-{n:04d}",
        partner="snowflake",
        account_id=ACCOUNT,
        account_name="ANALYTICS",
        currency="USD",
        usage_start=when,
        usage_end=when + timedelta(hours=1),
        billing_period=f"{when:%Y-%m}",
        region=REGION,
        kind="usage",
        licensed=False,
        service="compute",
    )
    row.update(kw)
    return row


def _cortex(n: int, when: datetime, model: str, tokens: int, credits: str, price: str = "3.10"):
    return _line(
        n,
        when,
        licensed=True,
        service="ai_services",
        sku_key=model,
        quantity=D(tokens),
        credits=D(credits),
        credit_price=D(price),
        cost=D(credits) * D(price),
    )


def _t(day: int, hour: int, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, 17, tzinfo=UTC)


def lines() -> pa.Table:
    rows = [
        _cortex(1, _t(1, 0), "llama3.3-70b", 1_234_567, "0.444444120"),
        _cortex(2, _t(1, 0), "llama3.3-70b", 10_001, "0.003600360"),  # same hour and model
        _cortex(3, _t(3, 11), "llama4-maverick", 987_654, "0.123456789"),
        _cortex(4, _t(17, 0), "llama4-scout", 3, "0.000000270", price="2.95"),
        _cortex(5, _t(31, 23), "snowflake-llama-3.3-70b", 555_555, "0.199999800"),
        _line(6, _t(3, 8), quantity=D("12.5"), cost=D("38.75"), credits=D("12.5"))
        | {"credit_price": D("3.10")},
        _line(7, _t(3, 0), service="storage", quantity=D("0.25"), cost=D("5.75")),
        _line(8, _t(17, 0), kind="credit", quantity=D(0), cost=D("-5.00")),
        # neighbouring months, in the views but not in March's pull
        _cortex(9, _t(28, 23, month=2), "llama3.3-70b", 1000, "0.000360000"),
        _line(10, _t(27, 5, month=2), quantity=D("2"), cost=D("6.20"), credits=D("2"))
        | {"credit_price": D("3.10")},
        _cortex(11, _t(1, 0, month=4), "llama3.3-70b", 1000, "0.000360000"),
    ]
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


IN_MARCH = {f"sf-{n:04d}" for n in range(1, 9)}


def _sf_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"NUMBER({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP_LTZ"
    return {pa.string(): "VARCHAR", pa.date32(): "DATE", pa.bool_(): "BOOLEAN"}[t]


def _py(v: object) -> object:
    # fakesnow reads a Decimal binding as an integer: send exact text, the column casts it.
    if isinstance(v, D):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def seed(con: Any, db: str, table: pa.Table, months: tuple[Period, ...] = ()) -> None:
    """The generator's unload of Feb-Apr as the three views in database ``db`` (tables with
    the views' own columns; the Cortex view without the two columns the pull adds)."""
    cur = con.cursor()
    cur.execute(f'CREATE DATABASE IF NOT EXISTS "{db}"')
    for schema in set(VIEWS.values()):
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{db}"."{schema}"')
    with tempfile.TemporaryDirectory() as tmp:
        for p in months or (Period(2025, 2), MAR, Period(2025, 4)):
            writer.write(table, p, Path(tmp))
        for view, schema in VIEWS.items():
            data = pa.concat_tables(pq.read_table(f) for f in Path(tmp).glob(f"*/{view}/*"))
            if view == writer.CORTEX:
                data = data.drop_columns(["ACCOUNT_LOCATOR", "REGION"])
            cols = ", ".join(f'"{f.name}" {_sf_type(f.type)}' for f in data.schema)
            fqn = f'"{db}"."{schema}"."{view}"'
            cur.execute(f"CREATE OR REPLACE TABLE {fqn} ({cols})")
            marks = ", ".join("?" * data.num_columns)
            rows = [tuple(_py(v) for v in r.values()) for r in data.to_pylist()]
            cur.executemany(f"INSERT INTO {fqn} VALUES ({marks})", rows)


def _stand_in_functions(con: Any) -> None:
    cur = con.cursor()
    for name, value in (("CURRENT_ACCOUNT", ACCOUNT), ("CURRENT_REGION", REGION)):
        # fakesnow runs the statement, then fails to describe it: the error is expected
        with contextlib.suppress(sf.ProgrammingError):
            cur.execute(f"CREATE FUNCTION {name}() RETURNS VARCHAR AS '{value}'")
    cur.execute("SELECT CURRENT_ACCOUNT() AS A, CURRENT_REGION() AS R")
    assert cur.fetchone() == (ACCOUNT, REGION)


# -- helpers ------------------------------------------------------------------------------------


def _remote(
    server: FakeSnow, db: str = "SNOWFLAKE", *, via_proxy: bool = False, **kw: Any
) -> SnowflakeUsageConnector:
    views = {
        "usage_view": f"{db}.ORGANIZATION_USAGE.USAGE_IN_CURRENCY_DAILY",
        "rate_view": f"{db}.ORGANIZATION_USAGE.RATE_SHEET_DAILY",
        "cortex_view": f"{db}.ACCOUNT_USAGE.CORTEX_FUNCTIONS_USAGE_HISTORY",
    }
    settings = SnowflakeUsageSettings(
        account="fakesnow",
        user="revshare_reader",
        password_env=PASSWORD_ENV,
        role="REVSHARE_READER",
        warehouse="REVSHARE_WH",
        host="127.0.0.1",
        port=server.proxy.port if via_proxy and server.proxy else server.port,
        protocol="http",
        retry_base_delay=0.2,
        **{**views, **kw},
    )
    return SnowflakeUsageConnector(settings, data_dir=Path("."), source_name="snowflake/billing")


def _extract(conn: SnowflakeUsageConnector, period: Period, work: Path) -> Snapshot:
    """The core's extract: fetch into staging, land under ``work/landing``, drop staging."""
    return extract(conn, period, work / "landing")


def _normalize(conn: SnowflakeUsageConnector, root: Path, files: tuple[str, ...]) -> pa.Table:
    ctx = NormalizeContext("snowflake", MAR, "snap", root, tuple(sorted(files)))
    return connect().sql(conn.normalize_sql(ctx)).to_arrow_table().cast(BILLING_SCHEMA)


def _local(tmp_path: Path, table: pa.Table) -> pa.Table:
    root = tmp_path / "local"
    writer.write(table, MAR, root)
    conn = SnowflakeUsageConnector(
        SnowflakeUsageSettings(path=str(root)), data_dir=root, source_name="snowflake/billing"
    )
    return _normalize(conn, root, tuple(f.relpath for f in conn.fetch(MAR, tmp_path).files))


def _sum(t: pa.Table, col: str) -> D:
    return sum((v for v in t[col].to_pylist() if v is not None), D(0))


# -- tests --------------------------------------------------------------------------------------


def test_round_trip_equals_local_read(server: FakeSnow, tmp_path: Path) -> None:
    conn = _remote(server)
    snap = _extract(conn, MAR, tmp_path)
    assert snap.files == tuple(sorted(f"2025-03/{v}/data_0_0_0.snappy.parquet" for v in VIEWS))
    assert snap.version and snap.version.startswith("sha256:")
    got = _normalize(conn, snap.dir, snap.files)
    want = _local(tmp_path, lines())
    # Same rows, same lineage (file and row): the pull is the local unload.
    assert got.num_rows == want.num_rows == 8
    assert in_one_order(got).equals(in_one_order(want)), "remote pull differs from the local read"
    # exact money: Cortex = credits x rate of the input lines, to the last digit
    src = lines().filter(pc.is_in(lines()["line_id"], pa.array(sorted(IN_MARCH))))
    cortex = got.filter(pc.equal(got["ServiceName"], "Cortex AI"))
    is_cortex = pc.equal(src["service"], "ai_services")
    assert _sum(cortex, "BilledCost") == _sum(src.filter(is_cortex), "cost")
    assert _sum(cortex, "BilledCost") == D("2.391654110400")
    assert _sum(got, "BilledCost") == _sum(src, "cost")
    # the Arrow types written are exact decimals, not floats
    credits = pq.read_schema(
        snap.dir / "2025-03/CORTEX_FUNCTIONS_USAGE_HISTORY/data_0_0_0.snappy.parquet"
    )
    assert credits.field("TOKEN_CREDITS").type == pa.decimal128(38, 9)


def test_period_filter(server: FakeSnow, tmp_path: Path) -> None:
    snap = _extract(_remote(server), MAR, tmp_path)
    cortex = pq.read_table(snap.dir / f"2025-03/{writer.CORTEX}/data_0_0_0.snappy.parquet")
    daily = pq.read_table(snap.dir / f"2025-03/{writer.DAILY}/data_0_0_0.snappy.parquet")
    rates = pq.read_table(snap.dir / f"2025-03/{writer.RATES}/data_0_0_0.snappy.parquet")
    assert cortex.num_rows == 5
    assert pc.min(cortex["START_TIME"]).as_py() >= MAR.start
    assert pc.max(cortex["START_TIME"]).as_py() < MAR.end
    for t, col in ((daily, "USAGE_DATE"), (rates, "DATE")):
        assert pc.min(t[col]).as_py() >= MAR.first_day
        assert pc.max(t[col]).as_py() < MAR.end.date()
    # ... while the views do hold February and April
    with server.client() as con:
        cur = con.cursor()
        cur.execute(f'SELECT COUNT(*) FROM "SNOWFLAKE"."ACCOUNT_USAGE"."{writer.CORTEX}"')
        assert cur.fetchone()[0] == 7
    feb = _extract(_remote(server), Period(2025, 2), tmp_path / "feb")
    assert (
        pq.read_metadata(feb.dir / f"2025-02/{writer.CORTEX}/data_0_0_0.snappy.parquet").num_rows
        == 1
    )


def test_pinned_account_gives_the_same_pull(server: FakeSnow, tmp_path: Path) -> None:
    a = _extract(_remote(server), MAR, tmp_path / "a")
    b = _extract(_remote(server, account_locator=ACCOUNT, region=REGION), MAR, tmp_path / "b")
    assert (a.id, a.version) == (b.id, b.version)
    # A pinned locator that is not the connected account finds no rate for its Cortex rows.
    other = _extract(_remote(server, account_locator="ZZ99999", region=REGION), MAR, tmp_path)
    conn = _remote(server)
    with pytest.raises(SourceError, match="no RATE_SHEET_DAILY rate"):
        _normalize(conn, other.dir, other.files)


def test_same_snapshot_then_new_after_change(server: FakeSnow, tmp_path: Path) -> None:
    with server.client() as con:
        seed(con, "SF_CHANGE", lines(), (MAR,))
    conn = _remote(server, "SF_CHANGE")
    first = _extract(conn, MAR, tmp_path)
    again = _extract(conn, MAR, tmp_path)
    assert (again.id, again.version) == (first.id, first.version)
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == [first.id]
    # Snowflake restates a day: one Cortex row's credits change
    with server.client() as con:
        con.cursor().execute(
            f'UPDATE "SF_CHANGE"."ACCOUNT_USAGE"."{writer.CORTEX}" SET "TOKEN_CREDITS" = ? '
            'WHERE "MODEL_NAME" = ?',
            ("0.000000300", "llama4-scout"),
        )
    changed = _extract(conn, MAR, tmp_path)
    assert changed.id != first.id and changed.version != first.version
    old = _normalize(conn, first.dir, first.files)  # the old snapshot stays readable
    new = _normalize(conn, changed.dir, changed.files)
    assert _sum(new, "BilledCost") - _sum(old, "BilledCost") == D("0.000000030") * D("2.95")


@pytest.mark.parametrize(
    ("setting", "name"),
    [
        ("cortex_view", "NO_SUCH_DB.ACCOUNT_USAGE.CORTEX_FUNCTIONS_USAGE_HISTORY"),
        ("rate_view", "SNOWFLAKE.ORGANIZATION_USAGE.NO_SUCH_VIEW"),
    ],
)
def test_missing_database_or_view_fails_fast(
    server: FakeSnow, tmp_path: Path, setting: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = _remote(server, **{setting: name})
    t0 = time.monotonic()
    with pytest.raises(SourceError) as err:
        _extract(conn, MAR, tmp_path)
    assert time.monotonic() - t0 < 5  # no retries
    assert list((tmp_path / "landing").iterdir()) == []  # a partial pull lands nothing
    assert name in str(err.value) and str(err.value).startswith("snowflake/billing: failed")
    assert "transient" not in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in str(err.value)


def test_password_never_in_logs_errors_or_files(
    server: FakeSnow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's own debug logging included
    assert server.proxy is not None
    server.proxy.bodies.clear()
    conn = _remote(server, via_proxy=True)
    snap = _extract(conn, MAR, tmp_path)
    # the password really was used: it went to the server in the login request ...
    assert any(PASSWORD.encode() in b for b in server.proxy.bodies)
    bad = _remote(server, usage_view="SNOWFLAKE.NOPE.USAGE_IN_CURRENCY_DAILY")
    with pytest.raises(SourceError) as err:
        _extract(bad, MAR, tmp_path)
    # ... and nowhere else: not in any log record (SDK debug included), error, repr or file
    assert any(r.name.startswith("snowflake.connector") for r in caplog.records)
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(err.value)
    assert PASSWORD not in repr(conn.settings) and PASSWORD not in str(conn.settings)
    for f in snap.dir.rglob("*"):
        assert not f.is_file() or PASSWORD.encode() not in f.read_bytes()
    # an unset variable is named (by its name), before any connection is tried
    os.environ.pop(PASSWORD_ENV)
    with pytest.raises(SourceError, match=f"environment variable {PASSWORD_ENV}"):
        _extract(conn, MAR, tmp_path)


def test_float_money_is_refused(server: FakeSnow, tmp_path: Path) -> None:
    with server.client() as con:
        seed(con, "SF_FLOAT", lines(), (MAR,))
        cur = con.cursor()
        schema = '"SF_FLOAT"."ORGANIZATION_USAGE"'
        cur.execute(
            f'CREATE TABLE {schema}."USAGE_IN_CURRENCY_DAILY_F" AS SELECT * REPLACE '
            f'(CAST("USAGE_IN_CURRENCY" AS FLOAT) AS "USAGE_IN_CURRENCY") '
            f'FROM {schema}."USAGE_IN_CURRENCY_DAILY"'
        )
    view = "SF_FLOAT.ORGANIZATION_USAGE.USAGE_IN_CURRENCY_DAILY_F"
    with pytest.raises(SourceError, match="USAGE_IN_CURRENCY came back as double") as err:
        _extract(_remote(server, "SF_FLOAT", usage_view=view), MAR, tmp_path)
    assert err.value.column == "USAGE_IN_CURRENCY"


@pytest.mark.parametrize(
    ("needle", "skip"),
    [("login-request", 0), ("query-request", 1)],  # at login; mid-pull, after the 1st view
)
def test_transient_outage_is_retried(
    server: FakeSnow, tmp_path: Path, caplog: pytest.LogCaptureFixture, needle: str, skip: int
) -> None:
    before = _extract(_remote(server), MAR, tmp_path / "before")
    caplog.set_level(logging.WARNING, logger="connectors.snowflake_usage.remote")
    # The SDK retries 503s by itself until login/network_timeout, then raises; ours takes over.
    conn = _remote(server, via_proxy=True, login_timeout=1, network_timeout=1, attempts=8)
    assert server.proxy is not None
    server.proxy.arm(needle, seconds=2.5, skip=skip)
    t0 = time.monotonic()
    after = _extract(conn, MAR, tmp_path / "after")
    elapsed = time.monotonic() - t0
    assert server.proxy.answered_503 > 0
    assert (after.id, after.version) == (before.id, before.version)
    retries = [r.getMessage() for r in caplog.records if "transient error" in r.getMessage()]
    assert retries, "the outage should have been retried by the connector"
    step = "connecting to Snowflake" if skip == 0 else "reading SNOWFLAKE.ORGANIZATION_USAGE"
    assert step in retries[0]
    assert elapsed < 20
    assert PASSWORD not in caplog.text


def test_outage_that_lasts_fails_with_source_error(server: FakeSnow, tmp_path: Path) -> None:
    conn = _remote(server, via_proxy=True, login_timeout=1, attempts=2)
    assert server.proxy is not None
    server.proxy.arm("login-request", seconds=30)
    try:
        with pytest.raises(SourceError, match="still failing after retries while connecting"):
            _extract(conn, MAR, tmp_path)
    finally:
        server.proxy.arm("", 0)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (sf.OperationalError(msg="could not connect", errno=250001), True),
        (sf.OperationalError(msg="timeout", errno=251011), True),
        (sf.ServiceUnavailableError(msg="503"), True),
        (sf.TooManyRequests(msg="429"), True),
        (sf.DatabaseError(msg="session expired", errno=390112), True),
        (ConnectionResetError(), True),
        (sf.ProgrammingError(msg="Object does not exist", errno=2003, sqlstate="42S02"), False),
        (sf.DatabaseError(msg="Incorrect username or password", errno=390100), False),
        (sf.ForbiddenError(msg="403"), False),
        (ValueError("bad"), False),
    ],
)
def test_transient_classifier(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
