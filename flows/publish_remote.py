"""Optional: copy a finished run folder to object storage (``s3://``, ``gs://``, ``az://``).

Set ``REVSHARE_PUBLISH_URI`` (e.g. ``s3://finance-recon/revshare``) and the flow uploads
``<uri>/<run id>/...`` after publishing locally. The cloud SDKs live here, in flows, never in
``revshare/``; they find credentials and endpoints the way they always do (``AWS_*`` and
``AWS_ENDPOINT_URL``; ``GOOGLE_APPLICATION_CREDENTIALS`` or ``STORAGE_EMULATOR_HOST``;
``AZURE_STORAGE_CONNECTION_STRING``).

Each object is one single-request upload, which all three stores make visible atomically
(all of it or none of it). The marker ``_PUBLISHED.json``, listing every object with its size
and SHA-256, is written last: a reader that sees the marker sees a complete run. Scratch
(``work/``) and temporary files are not published.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

URI_ENV = "REVSHARE_PUBLISH_URI"
MARKER = "_PUBLISHED.json"
SKIP_DIRS = {"work"}

#: put(key, data, content_type): one atomic single-request upload of one object.
Put = Callable[[str, bytes, str], None]


def run_files(run_dir: Path) -> Iterator[tuple[str, Path]]:
    """(relative key, path) of every file to publish, in a stable order."""
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or rel.parts[0] in SKIP_DIRS or path.name.startswith("."):
            continue
        yield rel.as_posix(), path


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def upload_tree(run_dir: Path, prefix: str, put: Put) -> dict:
    """Upload every file under ``prefix/<run id>/``, then the marker. Returns the marker."""
    base = "/".join(p for p in (prefix.strip("/"), run_dir.name) if p)
    objects = []
    for rel, path in run_files(run_dir):
        data = path.read_bytes()
        put(f"{base}/{rel}", data, _content_type(rel))
        objects.append({"key": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    marker = {"run_id": run_dir.name, "objects": objects}
    put(f"{base}/{MARKER}", json.dumps(marker, indent=1).encode(), "application/json")
    return marker


def _s3(bucket: str) -> Put:
    import boto3

    client = boto3.client("s3")

    def put(key: str, data: bytes, ctype: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=ctype)

    return put


def _gcs(bucket: str) -> Put:
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(project="local", credentials=AnonymousCredentials())
    else:
        client = storage.Client()
    b = client.bucket(bucket)

    def put(key: str, data: bytes, ctype: str) -> None:
        # One request up to the client's chunk threshold (100 MB): atomic on GCS.
        b.blob(key).upload_from_string(data, content_type=ctype)

    return put


def _azure(container: str) -> Put:
    from azure.storage.blob import BlobServiceClient, ContentSettings

    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    )
    client = service.get_container_client(container)

    def put(key: str, data: bytes, ctype: str) -> None:
        # Large blobs go up as blocks committed in one final call: still all-or-nothing.
        client.upload_blob(
            key, data, overwrite=True, content_settings=ContentSettings(content_type=ctype)
        )

    return put


BACKENDS: dict[str, Callable[[str], Put]] = {"s3": _s3, "gs": _gcs, "az": _azure}


def publish_run(run_dir: Path, uri: str) -> dict:
    """Upload ``run_dir`` to ``uri`` (``s3://bucket/prefix``, ``gs://...``, ``az://container/
    prefix``); the bucket or container must exist. Returns the marker written last."""
    u = urlparse(uri)
    if u.scheme not in BACKENDS or not u.netloc:
        raise ValueError(f"unsupported publish URI {uri!r}: use s3://, gs:// or az://")
    return upload_tree(run_dir, u.path, BACKENDS[u.scheme](u.netloc))


def publish_from_env(run_dir: Path | str) -> dict | None:
    """The flow's hook: publish when ``REVSHARE_PUBLISH_URI`` is set, else do nothing."""
    uri = os.environ.get(URI_ENV)
    return publish_run(Path(run_dir), uri) if uri else None
