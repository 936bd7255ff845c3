"""Secrets never leak: planted credentials, used by a real run against real local servers,
appear in no log line, Prefect log or artifact, file under the run and landing folders, nor
ledger row.

The run: AWS billing pulled from moto's S3 (secret access key planted), Azure billing from an
Azurite started with an account of our own (its key planted, handed over as a connection
string), Snowflake billing against fakesnow's server (password planted) where the usage views do
not exist, so that source fails and is quarantined (the failure path), a webhook notification
whose URL carries a planted token, and an SFTP password variable that nothing should ever print.
Config files refuse literal secrets outright (``revshare.config.refuse_literal_secrets``).
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import boto3
import duckdb
import pytest
import yaml

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "cloud"))
import servers  # noqa: E402
from servers import TOOLS, free_port, serve, tool  # noqa: E402
from test_snowflake import FakeSnow  # noqa: E402

moto = servers.moto  # the fixture, registered in this module under its own name

pytestmark = pytest.mark.e2e
PERIOD = "2026-10"
AWS_SECRET = "AwsSecretPlanted9q7ZkXw3LmN0pQrStUvWx"
AZURE_KEY = base64.b64encode(b"azure-account-key-PLANTED-4c1d9e-0123456789abcdef").decode()
SNOW_PASSWORD = "SnowPw-PLANTED-b8e2f1"
SFTP_PASSWORD = "SftpPw-PLANTED-a61c0d"
WEBHOOK_TOKEN = "HookToken-PLANTED-77e3aa"
SECRETS = [AWS_SECRET, AZURE_KEY, SNOW_PASSWORD, SFTP_PASSWORD, WEBHOOK_TOKEN]
AZ_ACCOUNT = "revacct"


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def azurite_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Azurite with an account whose key is the planted secret (AZURITE_ACCOUNTS)."""
    exe = tool(TOOLS / "node" / "node_modules" / ".bin" / "azurite-blob")
    data = tmp_path_factory.mktemp("azurite-own")
    port = free_port()
    cmd = [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
           str(data / "store"), "--disableTelemetry", "--skipApiVersionCheck"]  # fmt: skip
    import os

    env = {**os.environ, "AZURITE_ACCOUNTS": f"{AZ_ACCOUNT}:{AZURE_KEY}"}
    with serve(cmd, f"http://127.0.0.1:{port}/{AZ_ACCOUNT}?comp=list", data, env=env):
        yield port


@pytest.fixture(scope="module")
def fakesnow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSnow]:
    srv = FakeSnow(tmp_path_factory.mktemp("fakesnow"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hook.received.append(self.path + " " + body.decode(errors="replace"))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()


@pytest.fixture(scope="module")
def secret_run(
    tmp_path_factory: pytest.TempPathFactory, moto: str, azurite_own: int, fakesnow: FakeSnow,
    webhook: int, prefect_api,
) -> dict:  # fmt: skip
    root = tmp_path_factory.mktemp("secret-run")
    data, home, cfg = root / "data", root / "home", root / "config"
    generate(load_config(REPO / "config"), Period.parse(PERIOD), data, rows=120)
    shutil.copytree(REPO / "config", cfg)

    # AWS: the CUR 2.0 export in moto, under the bucket and prefix its manifest names.
    aws_root = data / "aws" / "cur2"
    man = json.loads(next(aws_root.rglob("*-Manifest.json")).read_text())
    bucket, _, key = man["dataFiles"][0][len("s3://") :].partition("/")
    prefix = key[: key.index("revshare-bedrock/")].rstrip("/")
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    for p in aws_root.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(aws_root).as_posix()}")

    # Azure: the cost export in Azurite's own account.
    from azure.storage.blob import BlobServiceClient

    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZURE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{azurite_own}/{AZ_ACCOUNT};")  # fmt: skip
    container = BlobServiceClient.from_connection_string(conn).create_container("costs")
    for p in (data / "azure").rglob("*"):
        if p.is_file():
            container.upload_blob(p.relative_to(data / "azure").as_posix(), p.read_bytes())

    partners = yaml.safe_load((cfg / "partners.yaml").read_text())
    p = partners["partners"]
    p["aws"]["billing"] = {"type": "aws_cur2", "path": f"s3://{bucket}/{prefix}",
                           "export_name": "revshare-bedrock", "endpoint_url": moto,
                           "region": "us-east-1", "retry_attempts": 1}  # fmt: skip
    p["azure"]["billing"] = {"type": "azure_cost", "container": "costs", "path": "costexports",
                             "export_name": "revshare-foundry", "retry_attempts": 1,
                             "connection_string_env": "TEST_AZURE_CONNECTION"}  # fmt: skip
    p["snowflake"]["billing"] = {
        "type": "snowflake_usage", "account": "fakesnow", "user": "revshare_reader",
        "password_env": "TEST_SNOWFLAKE_PASSWORD", "host": "127.0.0.1", "port": fakesnow.port,
        "protocol": "http", "attempts": 1, "retry_base_delay": 0.1,
    }  # fmt: skip
    (cfg / "partners.yaml").write_text(yaml.safe_dump(partners, sort_keys=False))
    notes = yaml.safe_load((cfg / "notifications.yaml").read_text())
    notes["enabled"] = True
    notes.pop("email", None)
    (cfg / "notifications.yaml").write_text(yaml.safe_dump(notes, sort_keys=False))

    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(k, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIAPLANTEDTEST")
        mp.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        mp.setenv("AWS_CONFIG_FILE", str(root / "none"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "none"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("TEST_AZURE_CONNECTION", conn)
        mp.setenv("TEST_SNOWFLAKE_PASSWORD", SNOW_PASSWORD)
        mp.setenv("REVSHARE_SFTP_PASSWORD", SFTP_PASSWORD)
        mp.setenv("REVSHARE_WEBHOOK_URL", f"http://127.0.0.1:{webhook}/hooks/{WEBHOOK_TOKEN}")
        mp.setenv("REVSHARE_CONFIG_DIR", str(cfg))
        mp.setenv("REVSHARE_DATA_DIR", str(data))
        mp.setenv("REVSHARE_HOME", str(home))
        from flows.reconcile import reconcile_period

        handler = _Capture()
        logging.getLogger().addHandler(handler)
        old = logging.getLogger().level
        logging.getLogger().setLevel(logging.DEBUG)
        try:
            result = reconcile_period(period=PERIOD)
        finally:
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(old)
    return {"result": result, "home": home, "logs": handler.lines, "root": root}


class _Capture(logging.Handler):
    """Every record any logger emits during the run, formatted with its arguments and any
    exception text (caplog sees only what propagates; this sits on the root logger too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string is still a line to search
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


def _all_prefect_logs() -> list[str]:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(limit=200)
            out = [entry.message for entry in logs]
            offset = 200
            while len(logs) == 200:
                logs = await client.read_logs(limit=200, offset=offset)
                out += [entry.message for entry in logs]
                offset += 200
            arts = await client.read_artifacts()
            out += [json.dumps(a.model_dump(mode="json"), default=str) for a in arts]
            return out

    return asyncio.run(read())


def test_the_run_used_the_secrets_and_quarantined_the_failing_source(secret_run: dict) -> None:
    status = {p["partner"]: p["status"] for p in secret_run["result"]["partners"]}
    assert status["aws"] == "reconciled" and status["azure"] == "reconciled"  # keys worked
    assert status["snowflake"] == "quarantined"


def test_the_webhook_was_called_through_its_secret_url(secret_run: dict) -> None:
    """The token is only worth searching for if the run used it."""
    notes = [line for line in secret_run["logs"] if "notification" in line.lower()]
    assert any(WEBHOOK_TOKEN in r for r in _Hook.received), f"webhook not called: {notes}"


def test_no_secret_in_any_log_line(secret_run: dict) -> None:
    lines = secret_run["logs"]
    assert lines, "logs were captured"
    assert [(s, line) for line in lines for s in _leaks(line)] == []


def test_no_secret_in_prefect_logs_or_artifacts(secret_run: dict) -> None:
    texts = _all_prefect_logs()
    assert any("quarantined" in t for t in texts)
    assert [t for t in texts if _leaks(t)] == []


def test_no_secret_in_any_file_under_home(secret_run: dict) -> None:
    """Reports, results, run.json, packets, Data Docs, landed snapshots, locks, the warehouse."""
    files = [p for p in secret_run["home"].rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in files) and any(p.suffix == ".html" for p in files)
    hits = []
    for p in files:
        raw = p.read_bytes()
        hits += [(str(p), s) for s in SECRETS if s.encode() in raw]
    assert hits == []


def test_no_secret_in_any_ledger_row(secret_run: dict) -> None:
    con = duckdb.connect(str(secret_run["home"] / "warehouse.duckdb"), read_only=True)
    tables = [
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    ]
    assert "run_sources" in tables
    rows = 0
    for t in tables:
        for row in con.execute(f'SELECT * FROM "{t}"').fetchall():
            rows += 1
            assert _leaks(repr(row)) == [], (t, row)
    assert rows
    reason = con.execute(
        "SELECT reason FROM run_sources WHERE partner = 'snowflake' AND kind = 'billing'"
    ).fetchone()[0]
    assert reason  # the failure is explained, without the password


def test_run_json_ledger_and_report_show_where_every_row_went(secret_run: dict) -> None:
    """Item 1 at flow level: each reconciled source's counts add up in run.json, the ledger
    and the report's data-quality table."""
    report = Path(secret_run["result"]["report"])
    meta = json.loads((report.parent / "run.json").read_text())
    ok = [s for s in meta["sources"] if s["status"] == "ok"]
    assert ok
    for s in ok:
        assert s["rows_read"] == s["rows_normalized"] + s["rows_rejected"], s
    con = duckdb.connect(str(secret_run["home"] / "warehouse.duckdb"), read_only=True)
    bad = con.execute(
        "SELECT count(*) FROM run_sources WHERE status = 'ok' AND "
        "(rows_read IS NULL OR rows_read <> rows_normalized + rows_rejected)"
    ).fetchone()[0]
    assert bad == 0
    html = report.read_text()
    for s in ok:
        assert f"{s['rows_read']} read = {s['rows_normalized']} normalized" in html


def test_a_literal_secret_in_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "config", cfg)
    partners = yaml.safe_load((cfg / "partners.yaml").read_text())
    partners["partners"]["snowflake"]["billing"]["password"] = SNOW_PASSWORD
    (cfg / "partners.yaml").write_text(yaml.safe_dump(partners))
    with pytest.raises(ValueError, match="literal secret") as err:
        load_config(cfg)
    assert SNOW_PASSWORD not in str(err.value)
    partners["partners"]["snowflake"]["billing"]["password"] = "${TEST_SNOWFLAKE_PASSWORD}"
    partners["partners"]["aws"]["billing"]["path"] = f"s3://user:{AWS_SECRET}@bucket/x"
    (cfg / "partners.yaml").write_text(yaml.safe_dump(partners))
    with pytest.raises(ValueError, match="URL carrying credentials") as err:
        load_config(cfg)
    assert AWS_SECRET not in str(err.value)
