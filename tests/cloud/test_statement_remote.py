"""Partner statements pulled from S3 (moto), GCS (gcp-storage-emulator), Azure Blob (Azurite)
and an SFTP drop (OpenSSH's sshd), each a real local server, through the official clients.

Statements go up as CSV, JSON and XLSX; the connector pulls them the way the flow does
(registry -> ``extract`` lands a snapshot -> ``normalize``), and the canonical rows must equal
those of the same files read from a local folder. Failures must be clear ``SourceError``s that
name the location and never carry the secret.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from servers import (  # noqa: F401 (fixtures)
    PasswordSftpServer,
    SftpServer,
    azurite,
    azurite_connection_string,
    gcs,
    moto,
    openssh_key,
    sftp,
    sftp_password,
)

from connectors import build_connector
from connectors.base import NormalizeContext
from connectors.statement_files.remote import Entry, select
from revshare.config import SourceConfig
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.sqlutil import lit
from revshare.stages import extract, normalize, snapshot_context
from revshare.store import Snapshot

pytestmark = pytest.mark.integration
P = Period(2026, 9)
SOURCE = "groq/statement"
BUCKET = "partner-statements"
HEADER = [
    "statement_id", "revision", "issued_date", "partner_id", "period", "model_id", "region",
    "unit", "unit_size", "quantity", "gross_revenue", "share_rate", "share_amount", "currency",
]  # fmt: skip
AZ_ENV = "REVSHARE_TEST_STATEMENT_AZ_CONN"
KEY_ENV = "REVSHARE_TEST_STATEMENT_SFTP_KEY"
SECRET = "planted-Secret-51c0ffee-do-not-log"


# -- statements in the three formats ------------------------------------------------------------


def _line(sid: str, rev: int, model: str, unit: str, qty: str, rev_amt: str, share: str) -> list:
    return [sid, rev, "2026-10-04", "groq", str(P), model, "us-east-1", unit, 1000, qty,
            rev_amt, "0.15", share, "USD"]  # fmt: skip


def csv_statement(rev: int = 1) -> bytes:
    rows = [
        _line("S-CSV", rev, "llama-3.3-70b", "input_tokens", "2500.5", "1.80", "0.27"),
        _line("S-CSV", rev, "llama-3.3-70b", "output_tokens", "77", "0.10", str(0.015 * rev)),
    ]
    return ("\n".join(",".join(map(str, r)) for r in [HEADER, *rows]) + "\n").encode()


def json_statement() -> bytes:
    doc = {
        "statement_id": "S-JSON", "revision": 1, "issued_date": "2026-10-05",
        "partner_id": "groq", "period": str(P), "currency": "EUR",
        "lines": [{"model_id": "llama-4-scout", "region": "eu-west-1", "unit": "input_tokens",
                   "unit_size": 1000, "quantity": "10", "gross_revenue": "0.01",
                   "share_rate": "0.15", "share_amount": "0.0015"}],
    }  # fmt: skip
    return json.dumps(doc).encode()


def xlsx_statement() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(_line("S-XLSX", 1, "llama-3.1-8b", "output_tokens", "12", "3.5", "0.525"))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FILES = {"s-csv-r1.csv": csv_statement(), "s-json.json": json_statement(),
         "s-xlsx.xlsx": xlsx_statement()}  # fmt: skip


# -- one interface over the four stores ---------------------------------------------------------


@dataclass
class Backend:
    kind: str
    #: Connector settings (``path`` points at this test's own prefix).
    settings: dict[str, Any]
    #: put(relpath under the prefix, bytes) as the partner's side would upload it.
    put: Callable[[str, bytes], None]
    extra: dict[str, Any] = field(default_factory=dict)

    def connector(self, data_dir: Path, **override: Any) -> Any:
        cfg = SourceConfig(type="statement_files", **{**self.settings, **override})
        return build_connector(cfg, data_dir, SOURCE)


def _s3(request: pytest.FixtureRequest, mp: pytest.MonkeyPatch, prefix: str) -> Backend:
    import boto3

    url = request.getfixturevalue("moto")
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():  # fmt: skip
        mp.setenv(k, v)
    mp.delenv("AWS_PROFILE", raising=False)
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    settings = {"path": f"s3://{BUCKET}/{prefix}", "endpoint_url": url, "region": "us-east-1",
                "retry_attempts": 2, "retry_base_delay": 0}  # fmt: skip
    return Backend("s3", settings, lambda rel, data: s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}/{rel}", Body=data), {"url": url})  # fmt: skip


def _gcs(request: pytest.FixtureRequest, mp: pytest.MonkeyPatch, prefix: str) -> Backend:
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    mp.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("gcs"))
    mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    client = storage.Client(project="local", credentials=AnonymousCredentials())
    with contextlib.suppress(Conflict):
        client.create_bucket(BUCKET)
    bucket = client.bucket(BUCKET)
    settings = {"path": f"gs://{BUCKET}/{prefix}", "retry_attempts": 2, "retry_base_delay": 0}
    return Backend("gs", settings, lambda rel, data: bucket.blob(f"{prefix}/{rel}")
                   .upload_from_string(data))  # fmt: skip


def _azure(request: pytest.FixtureRequest, mp: pytest.MonkeyPatch, prefix: str) -> Backend:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    port = request.getfixturevalue("azurite")
    conn = azurite_connection_string(port)
    mp.setenv(AZ_ENV, conn)
    svc = BlobServiceClient.from_connection_string(conn)
    with contextlib.suppress(ResourceExistsError):
        svc.create_container(BUCKET)
    container = svc.get_container_client(BUCKET)
    settings = {"path": f"az://{BUCKET}/{prefix}", "connection_string_env": AZ_ENV,
                "retry_attempts": 2, "retry_base_delay": 0}  # fmt: skip
    return Backend("az", settings, lambda rel, data: container.upload_blob(
        f"{prefix}/{rel}", data, overwrite=True), {"port": port})  # fmt: skip


def _sftp(request: pytest.FixtureRequest, mp: pytest.MonkeyPatch, prefix: str) -> Backend:
    server: SftpServer = request.getfixturevalue("sftp")
    mp.setenv(KEY_ENV, server.client_key)
    folder = server.root / prefix

    def put(rel: str, data: bytes) -> None:  # the partner's side writes into its drop
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)

    settings = {"path": server.uri(folder), "known_hosts": str(server.known_hosts),
                "private_key_env": KEY_ENV, "retry_attempts": 2, "retry_base_delay": 0}  # fmt: skip
    return Backend("sftp", settings, put, {"server": server})


MAKERS = {"s3": _s3, "gs": _gcs, "az": _azure, "sftp": _sftp}


@pytest.fixture(params=sorted(MAKERS))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Each test gets its own prefix in the shared (module-scoped) server."""
    return MAKERS[request.param](request, monkeypatch, f"drops/{uuid.uuid4().hex[:10]}")


# -- the flow's path: extract (land) -> normalize -----------------------------------------------


def _rows(conn: Any, snap: Snapshot, out: Path) -> list[dict]:
    ctx = snapshot_context(NormalizeContext, "groq", P, snap)
    done = normalize(conn, ctx, out)
    return (
        duckdb.sql(
            f"SELECT * FROM read_parquet({lit(done.path)}) ORDER BY x_SourceFile, x_SourceRow"
        )
        .to_arrow_table()
        .to_pylist()
    )


def _local(tmp: Path, files: dict[str, bytes]) -> tuple[Snapshot, list[dict]]:
    folder = tmp / "local" / str(P)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    conn = build_connector(SourceConfig(type="statement_files", path="local"), tmp, SOURCE)
    snap = extract(conn, P, tmp / "landing-local")
    return snap, _rows(conn, snap, tmp / "local.parquet")


def test_remote_statements_equal_the_local_read(backend: Backend, tmp_path: Path) -> None:
    for name, data in FILES.items():
        backend.put(f"{P}/{name}", data)
    backend.put(f"{P}/notes.txt", b"not a statement")  # skipped, as locally
    backend.put(f"{P.next()}/next-month.csv", csv_statement())  # another period

    conn = backend.connector(tmp_path)
    snap = extract(conn, P, tmp_path / "landing")
    rows = _rows(conn, snap, tmp_path / "remote.parquet")
    local_snap, local_rows = _local(tmp_path, FILES)

    assert sorted(snap.files) == sorted(FILES)
    assert {f: (snap.dir / f).read_bytes() for f in snap.files} == FILES
    # Same names and bytes: the same snapshot id, so the same canonical rows to the last column.
    assert snap.id == local_snap.id
    assert rows == local_rows
    assert [(r["x_SourceFile"], r["StatementId"], r["Currency"]) for r in rows] == [
        ("s-csv-r1.csv", "S-CSV", "USD"), ("s-csv-r1.csv", "S-CSV", "USD"),
        ("s-json.json", "S-JSON", "EUR"), ("s-xlsx.xlsx", "S-XLSX", "USD"),
    ]  # fmt: skip
    assert not any(tmp_path.joinpath("landing").glob(".staging-*"))  # staging removed


def test_a_later_revision_is_picked_up_and_both_are_kept(backend: Backend, tmp_path: Path) -> None:
    backend.put(f"{P}/s-csv-r1.csv", csv_statement(1))
    conn = backend.connector(tmp_path)
    first = extract(conn, P, tmp_path / "landing")
    assert extract(conn, P, tmp_path / "landing").id == first.id  # unchanged: nothing new

    backend.put(f"{P}/s-csv-r2.csv", csv_statement(2))  # the partner resubmits
    second = extract(conn, P, tmp_path / "landing")
    assert second.id != first.id
    assert first.files == ("s-csv-r1.csv",) and (first.dir / "s-csv-r1.csv").exists()
    assert second.files == ("s-csv-r1.csv", "s-csv-r2.csv")
    rows = _rows(conn, second, tmp_path / "out.parquet")
    assert sorted({(r["StatementId"], r["Revision"]) for r in rows}) == [("S-CSV", 1), ("S-CSV", 2)]


def test_a_missing_period_names_the_location(backend: Backend, tmp_path: Path) -> None:
    backend.put(f"{P.next()}/later.csv", csv_statement())
    with pytest.raises(SourceError, match=f"no statement for {P} at ") as exc:
        extract(backend.connector(tmp_path), P, tmp_path / "landing")
    assert backend.settings["path"].split("://")[0] + "://" in str(exc.value)
    assert not list((tmp_path / "landing").iterdir())  # nothing landed, staging removed


# -- wrong credentials: clear, and the secret appears nowhere -----------------------------------


class TokenEndpoint:
    """A local OAuth token endpoint that refuses every grant, as Google does for a revoked or
    unknown service-account key (``invalid_grant``)."""

    def __enter__(self) -> str:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}'
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _moto_auth(url: str, count: str) -> None:
    """Turn moto's request signing checks on ("0") or off ("inf")."""
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form body would be parsed away (500)
    )
    urllib.request.urlopen(req, timeout=10).close()


def _service_account(path: Path, token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        .decode()
    )
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "local", "private_key_id": SECRET,
        "private_key": pem, "client_email": "reader@local.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }))  # fmt: skip
    return pem


def test_wrong_credentials_fail_clearly_without_the_secret(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    backend.put(f"{P}/s.csv", csv_statement())
    secrets = [SECRET]
    with TokenEndpoint() as token_uri:
        if backend.kind == "s3":
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
            _moto_auth(backend.extra["url"], "0")
            expect = "rejected the credentials"
        elif backend.kind == "gs":
            key = tmp_path / "sa.json"
            pem = _service_account(key, token_uri)
            secrets += [pem.splitlines()[1], pem.splitlines()[5]]
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
            expect = "Google rejected the credentials"
        elif backend.kind == "az":
            wrong = "V3Jvbmc" + SECRET.replace("-", "") + "=="
            monkeypatch.setenv(AZ_ENV, azurite_connection_string(backend.extra["port"], wrong))
            secrets += [wrong]
            expect = f"access denied .* check the connection string in \\${AZ_ENV}"
        else:
            other, _ = openssh_key(passphrase=None)
            monkeypatch.setenv(KEY_ENV, other)
            secrets += [line for line in other.splitlines()[1:3]]
            expect = f"rejected the credentials for user .* \\(private key from \\${KEY_ENV}\\)"
        try:
            with pytest.raises(SourceError, match=expect) as exc:
                extract(backend.connector(tmp_path), P, tmp_path / "landing")
        finally:
            if backend.kind == "s3":
                _moto_auth(backend.extra["url"], "inf")
    text = f"{exc.value!s} {exc.value!r} {caplog.text}"
    assert exc.value.source == SOURCE
    for secret in secrets:
        assert secret not in text


def test_missing_credentials_are_named(backend: Backend, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if backend.kind == "s3":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        expect = "no AWS credentials found"
    elif backend.kind == "gs":
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
        expect = "no usable Google credentials"
    else:
        env = AZ_ENV if backend.kind == "az" else KEY_ENV
        monkeypatch.delenv(env)
        expect = f"environment variable {env} .* is not set"
    with pytest.raises(SourceError, match=expect):
        extract(backend.connector(tmp_path), P, tmp_path / "landing")


# -- SFTP host keys: strict, no trust on first use ----------------------------------------------


def test_sftp_unknown_host_key_is_refused(request: pytest.FixtureRequest, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    b = _sftp(request, monkeypatch, "drops/hostkeys")
    b.put(f"{P}/s.csv", csv_statement())
    server: SftpServer = b.extra["server"]
    known = tmp_path / "known_hosts"

    known.write_text(f"other.example {server.host_public_key}\n")  # not this server
    with pytest.raises(
        SourceError, match=r"is not in the known_hosts file .*: refusing to connect"
    ) as exc:
        extract(b.connector(tmp_path, known_hosts=str(known)), P, tmp_path / "l1")
    assert "ssh-ed25519 SHA256:" in str(exc.value)  # the fingerprint to compare with the partner

    _, impostor = openssh_key()
    known.write_text(f"[127.0.0.1]:{server.port} {impostor}\n")  # this server, another key
    with pytest.raises(SourceError, match="host key differs from the one in the known_hosts file"):
        extract(b.connector(tmp_path, known_hosts=str(known)), P, tmp_path / "l2")

    with pytest.raises(SourceError, match=r"known_hosts file absent not found"):
        extract(b.connector(tmp_path, known_hosts="absent"), P, tmp_path / "l3")
    assert not (known.read_text().count("\n") > 1)  # nothing was added to the file

    snap = extract(b.connector(tmp_path), P, tmp_path / "l4")  # the right key: it works
    assert snap.files == ("s.csv",)


def test_sftp_private_key_file_with_passphrase(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file protected by a passphrase from the environment; a wrong passphrase fails
    before any connection, naming the file and not the passphrase."""
    b = _sftp(request, monkeypatch, "drops/keyfile")
    server: SftpServer = b.extra["server"]
    b.put(f"{P}/s.csv", csv_statement())
    key_file = tmp_path / "id_partner"
    _, pub = openssh_key(key_file, passphrase=SECRET.encode())
    auth = server.known_hosts.parent / "authorized_keys"
    auth.write_text(auth.read_text() + pub + "\n")
    monkeypatch.setenv("REVSHARE_TEST_PASSPHRASE", SECRET)
    settings = {k: v for k, v in b.settings.items() if k != "private_key_env"}
    cfg = SourceConfig(type="statement_files", **settings, private_key_path=str(key_file),
                       passphrase_env="REVSHARE_TEST_PASSPHRASE")  # fmt: skip
    snap = extract(build_connector(cfg, tmp_path, SOURCE), P, tmp_path / "landing")
    assert snap.files == ("s.csv",)

    monkeypatch.setenv("REVSHARE_TEST_PASSPHRASE", "wrong-" + SECRET)
    with pytest.raises(SourceError, match="cannot read the private key file") as exc:
        extract(build_connector(cfg, tmp_path, SOURCE), P, tmp_path / "landing2")
    assert SECRET not in str(exc.value)


def test_sftp_password_from_the_environment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password authentication, against a server that takes one: the right password lands
    the statement; a wrong one is refused on the first attempt, naming where the password
    comes from and never the password."""
    server: PasswordSftpServer = request.getfixturevalue("sftp_password")
    folder = server.root / "drops/password"
    (folder / str(P)).mkdir(parents=True)
    (folder / str(P) / "s.csv").write_bytes(csv_statement())
    env = "REVSHARE_TEST_SFTP_PASSWORD"
    cfg = SourceConfig(type="statement_files", path=server.uri(folder),
                       known_hosts=str(server.known_hosts), password_env=env,
                       retry_attempts=3, retry_base_delay=0)  # fmt: skip
    monkeypatch.setenv(env, server.password)
    snap = extract(build_connector(cfg, tmp_path, SOURCE), P, tmp_path / "l1")
    assert snap.files == ("s.csv",)
    assert (snap.dir / "s.csv").read_bytes() == csv_statement()

    monkeypatch.setenv(env, "wrong-" + server.password)
    with pytest.raises(SourceError, match=f"rejected the credentials for user partner "
                       rf"\(password from \${env}\)") as exc:  # fmt: skip
        extract(build_connector(cfg, tmp_path, SOURCE), P, tmp_path / "l2")
    assert server.password not in str(exc.value) and "attempt" not in str(exc.value)

    monkeypatch.delenv(env)
    with pytest.raises(SourceError, match=env) as exc:
        extract(build_connector(cfg, tmp_path, SOURCE), P, tmp_path / "l3")
    assert server.password not in str(exc.value)


# -- names that would leave staging --------------------------------------------------------------


def test_a_key_escaping_the_period_folder_is_refused(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 stores ``..`` in a key as plain text, so a listing can return one. (Azurite and the
    GCS emulator refuse to store such a name, and an SFTP listing holds plain file names: the
    one shared guard, ``select``, is checked for every form of name below.)"""
    b = _s3(request, monkeypatch, "drops/escape")
    b.put(f"{P}/s.csv", csv_statement())
    b.put(f"{P}/../../evil.csv", b"x")
    with pytest.raises(SourceError, match=re.escape(f"unsafe file path in delivery: '{P}/../../")):
        extract(b.connector(tmp_path), P, tmp_path / "landing")
    assert not list(tmp_path.rglob("evil.csv"))
    assert not list((tmp_path / "landing").iterdir())


@pytest.mark.parametrize(
    "name",
    [
        "../evil.csv",
        "../../evil.csv",
        "/etc/evil.csv",
        "a\\..\\..\\evil.csv",
        "x/../../e.csv",
        "..",
        "./../evil.csv",
    ],
)
def test_select_refuses_every_escaping_name(name: str) -> None:
    with pytest.raises(SourceError, match="unsafe file path"):
        select(SOURCE, P, [Entry("ok.csv", 1, None), Entry(name, 1, None)])


def test_select_keeps_statement_files_of_the_folder_only() -> None:
    names = ["b.CSV", "a.json", "c.xlsx", "notes.txt", "sub/x.csv", "folder/", ""]
    picked = select(SOURCE, P, [Entry(n, 1, n) for n in names])
    assert [rel for _, rel in picked] == [f"{P}/a.json", f"{P}/b.CSV", f"{P}/c.xlsx"]


def test_connector_settings_refuse_secrets_and_misplaced_fields(tmp_path: Path) -> None:
    def build(**kw: Any) -> Any:
        return build_connector(SourceConfig(type="statement_files", **kw), tmp_path, SOURCE)

    with pytest.raises(SourceError) as exc:
        build(path=f"sftp://u:{SECRET}@h.example/x", known_hosts="k", password_env="P")
    assert SECRET not in str(exc.value)
    for bad, needle in [
        ({"path": "sftp://u@h.example/x", "private_key_env": "K"}, "known_hosts"),
        ({"path": "sftp://h.example/x", "known_hosts": "k", "password_env": "P"}, "user name"),
        ({"path": "gs://bucket-a/x", "connection_string_env": "X"}, "az://"),
        ({"path": "az://cont/x"}, "credential source"),
        ({"path": "local", "region": "us-east-1"}, "s3://"),
        ({"path": "ftp://h/x"}, "unsupported"),
        ({"path": "gs://bucket-a/x/../y"}, "'..'"),
    ]:
        with pytest.raises(SourceError, match=needle):
            build(**bad)


def test_locate_refuses_a_remote_source(tmp_path: Path) -> None:
    conn = build_connector(
        SourceConfig(type="statement_files", path=f"s3://{BUCKET}/x"), tmp_path, SOURCE
    )
    with pytest.raises(SourceError, match="pulled with fetch"):
        conn.locate(P)


def test_azure_credentials_block_drives_a_statement_pull(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api
) -> None:
    """``credentials_block`` instead of an env var name: the block's connection string is
    exposed for this one pull (``flows/credentials.py``) and gone afterwards."""
    from prefect_azure import AzureBlobStorageCredentials

    from flows.credentials import block_credentials

    b = _azure(request, monkeypatch, "drops/block")
    b.put(f"{P}/s.csv", csv_statement())
    AzureBlobStorageCredentials(connection_string=os.environ[AZ_ENV]).save(
        "statements", overwrite=True
    )
    monkeypatch.delenv(AZ_ENV)
    source = SourceConfig(
        type="statement_files",
        path=b.settings["path"],
        credentials_block="azure-blob-storage-credentials/statements",
    )
    with block_credentials(source, SOURCE) as resolved:
        env = resolved.connector_settings()["connection_string_env"]
        snap = extract(build_connector(resolved, tmp_path, SOURCE), P, tmp_path / "landing")
    assert snap.files == ("s.csv",)
    assert env not in os.environ
