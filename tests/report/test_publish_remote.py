"""Publishing a run folder to S3 (moto's server), GCS (gcp-storage-emulator) and Azure Blob
(Azurite) through the official clients: every file arrives byte for byte, scratch does not,
and the marker is written last and lists what a reader may trust."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from flows.publish_remote import MARKER, publish_from_env, publish_run, upload_tree
from tests.report import servers

pytestmark = pytest.mark.integration
RUN = "2026-10_20261126T000000Z_abcdef"


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / RUN
    files = {
        "report.html": b"<!doctype html><title>r</title>",
        "run.json": b'{"run_id": "x"}',
        "results/discrepancies.parquet": b"PAR1" + bytes(range(256)) * 40,
        "packets/aws/dispute_2026-10_aws.xlsx": b"PK\x03\x04xlsx",
        "work/aws.billing.parquet": b"scratch",
        "results/.discrepancies.csv.tmp": b"half-written",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


EXPECTED = {"report.html", "run.json", "results/discrepancies.parquet",
            "packets/aws/dispute_2026-10_aws.xlsx"}  # fmt: skip


def _check(store: dict[str, bytes], run_dir: Path, prefix: str) -> None:
    base = f"{prefix}/{RUN}"
    assert set(store) == {f"{base}/{k}" for k in EXPECTED | {MARKER}}
    for rel in EXPECTED:
        assert store[f"{base}/{rel}"] == (run_dir / rel).read_bytes()
    marker = json.loads(store[f"{base}/{MARKER}"])
    assert {o["key"] for o in marker["objects"]} == EXPECTED
    for o in marker["objects"]:
        assert o["sha256"] == hashlib.sha256(store[f"{base}/{o['key']}"]).hexdigest()


def test_marker_is_written_last_and_scratch_skipped(run_dir: Path) -> None:
    order: list[str] = []
    upload_tree(run_dir, "/recon/", lambda key, data, ctype: order.append(key))
    assert order[-1] == f"recon/{RUN}/{MARKER}"
    assert {k.split(f"{RUN}/", 1)[1] for k in order[:-1]} == EXPECTED


def test_unsupported_uri_fails_clearly(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="s3://, gs:// or az://"):
        publish_run(run_dir, "ftp://host/x")


def test_s3(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    port = servers.free_port()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    with servers.moto(port, tmp_path):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="finance")
        monkeypatch.setenv("REVSHARE_PUBLISH_URI", "s3://finance/recon")
        publish_from_env(run_dir)
        listed = s3.list_objects_v2(Bucket="finance")["Contents"]
        store = {o["Key"]: s3.get_object(Bucket="finance", Key=o["Key"])["Body"].read()
                 for o in listed}  # fmt: skip
        head = s3.head_object(Bucket="finance", Key=f"recon/{RUN}/report.html")
        assert head["ContentType"] == "text/html"
    _check(store, run_dir, "recon")


def test_gcs(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = servers.free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    with servers.gcs(port, tmp_path):
        client = storage.Client(project="local", credentials=AnonymousCredentials())
        client.create_bucket("finance")
        publish_run(run_dir, "gs://finance/recon")
        store = {b.name: b.download_as_bytes() for b in client.list_blobs("finance")}
    _check(store, run_dir, "recon")


def test_azure(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import BlobServiceClient

    port = servers.free_port()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", servers.azure_conn(port))
    with servers.azurite(port, tmp_path):
        service = BlobServiceClient.from_connection_string(servers.azure_conn(port))
        container = service.create_container("finance")
        publish_run(run_dir, "az://finance/recon")
        store = {b.name: container.download_blob(b.name).readall()
                 for b in container.list_blobs()}  # fmt: skip
        props = container.get_blob_client(f"recon/{RUN}/report.html").get_blob_properties()
        assert props.content_settings.content_type == "text/html"
    _check(store, run_dir, "recon")
