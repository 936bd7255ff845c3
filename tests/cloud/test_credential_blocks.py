"""Credentials from Prefect blocks reach the connectors, for one extraction only, and leak
nowhere. Real servers: moto's S3 (signs requests: no credentials, no pull) and Azurite
(checks the account key)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import boto3
import pytest
from servers import azurite, azurite_connection_string, moto  # noqa: F401 (fixtures)

from connectors import build_connector
from flows.credentials import block_credentials
from revshare.config import SourceConfig
from revshare.errors import SourceError
from revshare.generate import aws as aws_writer
from revshare.generate.usage import combos, draw_lines, finalize, to_gen_lines
from revshare.periods import Period
from revshare.stages import extract

pytestmark = pytest.mark.integration
P = Period.parse("2026-10")
SECRET = "planted-Secret-7f3a9c-do-not-log"


@pytest.fixture()
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _export(root: Path, moto: str) -> None:
    rng = __import__("numpy").random.default_rng(1)
    lines = finalize(to_gen_lines("aws", P, draw_lines("aws", P, 50, rng, combos("aws"))))
    aws_writer.write(lines, P, root, export_name="exp", bucket="billing", prefix="cur2")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    s3.create_bucket(Bucket="billing")
    for f in root.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "billing", f"cur2/{f.relative_to(root).as_posix()}")


def test_aws_block_supplies_credentials_for_one_pull_only(
    moto: str, no_ambient_aws: None, tmp_path: Path, prefect_api, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect_aws import AwsCredentials

    _export(tmp_path / "src", moto)
    AwsCredentials(
        aws_access_key_id="AKIATESTBLOCK", aws_secret_access_key=SECRET, region_name="us-east-1"
    ).save("revshare-reader", overwrite=True)
    plain = SourceConfig(
        type="aws_cur2",
        path="s3://billing/cur2",
        export_name="exp",
        endpoint_url=moto,
        retry_attempts=1,
    )
    with pytest.raises(SourceError, match="credential"):
        extract(build_connector(plain, tmp_path, "aws/billing"), P, tmp_path / "l0")

    caplog.set_level(logging.DEBUG)
    source = SourceConfig(**plain.model_dump(), credentials_block="aws-credentials/revshare-reader")
    with block_credentials(source, "aws/billing") as resolved:
        assert "credentials_block" not in resolved.connector_settings()
        snap = extract(build_connector(resolved, tmp_path, "aws/billing"), P, tmp_path / "l1")
    assert snap.files and all((snap.dir / f).exists() for f in snap.files)
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ  # gone after the pull
    assert SECRET not in caplog.text and SECRET not in repr(resolved)


def test_azure_block_connection_string_against_azurite(
    azurite: int, tmp_path: Path, prefect_api
) -> None:
    from azure.storage.blob import BlobServiceClient
    from prefect_azure import AzureBlobStorageCredentials

    from revshare.generate import azure as azure_writer

    conn = azurite_connection_string(azurite)
    rng = __import__("numpy").random.default_rng(2)
    lines = finalize(to_gen_lines("azure", P, draw_lines("azure", P, 40, rng, combos("azure"))))
    root = tmp_path / "src"
    azure_writer.write(lines, P, root, export_name="exp")
    container = BlobServiceClient.from_connection_string(conn).create_container("costs")
    for f in root.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                container.upload_blob(f.relative_to(root).as_posix(), fh)
    AzureBlobStorageCredentials(connection_string=conn).save("costs", overwrite=True)
    source = SourceConfig(
        type="azure_cost",
        container="costs",
        path="",
        export_name="exp",
        credentials_block="azure-blob-storage-credentials/costs",
    )
    with block_credentials(source, "azure/billing") as resolved:
        snap = extract(
            build_connector(resolved, tmp_path, "azure/billing"), P, tmp_path / "landing"
        )
        env_name = resolved.connector_settings()["connection_string_env"]
    assert any(f.endswith(".csv.gz") for f in snap.files)
    assert env_name not in os.environ


def test_unknown_block_is_a_clear_source_error(prefect_api) -> None:
    source = SourceConfig(
        type="aws_cur2",
        path="s3://b/p",
        export_name="e",
        credentials_block="aws-credentials/does-not-exist",
    )
    with pytest.raises(SourceError, match="does-not-exist"), block_credentials(source, "x/y"):
        pass
