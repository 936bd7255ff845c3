"""The AWS Data Exports delivery layout, shared by CUR 2.0 and the FOCUS export.

Both are "Data Exports" with the same S3 layout::

    PREFIX/EXPORT/data/BILLING_PERIOD=YYYY-MM/[EXECUTION_ID/]EXPORT-00001.snappy.parquet
    PREFIX/EXPORT/metadata/BILLING_PERIOD=YYYY-MM/EXPORT-Manifest.json

The manifest is rewritten on every refresh, after the data files are delivered, and lists
them by full ``s3://`` URI. It alone says which files make the current delivery (older
execution folders stay beside the new one in create-new mode), so readers are driven by it,
never by a folder listing. Locally the same layout sits under a folder standing for
``s3://BUCKET/PREFIX/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from connectors.aws_cur2.s3config import S3Location
from revshare.errors import SourceError
from revshare.periods import Period


class ErrorFactory(Protocol):
    def __call__(
        self,
        message: str,
        *,
        file: str | None = ...,
        row: int | None = ...,
        column: str | None = ...,
    ) -> SourceError: ...


#: Called with the parsed manifest and its relpath before the common checks.
Precheck = Callable[[dict[str, Any], str], None]


def manifest_relpath(export: str, period: Period) -> str:
    return f"{export}/metadata/BILLING_PERIOD={period}/{export}-Manifest.json"


def data_partition(export: str, period: Period) -> str:
    """The period's data folder, relative to the export's prefix (with a trailing '/')."""
    return f"{export}/data/BILLING_PERIOD={period}/"


@dataclass(frozen=True)
class Manifest:
    relpath: str
    execution_id: str
    export_arn: str
    data_uris: tuple[str, ...]
    raw: dict[str, Any]


def parse_manifest(
    raw: bytes,
    relpath: str,
    error: ErrorFactory,
    precheck: Precheck | None = None,
) -> Manifest:
    """Parse a Data Exports manifest; ``precheck`` lets a reader reject a foreign format (legacy
    CUR manifests lack executionId, and deserve their own message) before the common checks."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"manifest is not valid JSON: {e}", file=relpath) from None
    if not isinstance(doc, dict):
        raise error("manifest is not a JSON object", file=relpath)
    if precheck is not None:
        precheck(doc, relpath)
    exec_id = doc.get("executionId")
    if not isinstance(exec_id, str) or not exec_id:
        raise error("manifest has no executionId", file=relpath)
    data = doc.get("dataFiles")
    if not isinstance(data, list) or not data:
        raise error("manifest lists no dataFiles", file=relpath)
    return Manifest(relpath, exec_id, str(doc.get("exportArn", "")), tuple(data), doc)


def data_relpaths(
    manifest: Manifest,
    export: str,
    period: Period,
    error: ErrorFactory,
    location: S3Location | None = None,
) -> list[str]:
    """Each listed data file as a path relative to the export's prefix (the local layout).

    With ``location`` (a pull) a URI must lie in that bucket under that prefix: a manifest
    never sends us to someone else's bucket. Without it (a local mirror, whose bucket we do not
    know) the URI only has to end inside this export's partition for ``period``.
    """
    part = data_partition(export, period)
    out: list[str] = []
    for uri in manifest.data_uris:
        rel = _relpath(uri, part, location)
        if rel is None:
            where = location.uri(part) if location else f"this export's {period} partition"
            raise error(
                f"manifest lists {uri!r}, which is not an s3:// URI inside {where}",
                file=manifest.relpath,
            )
        out.append(rel)
    if len(set(out)) != len(out):
        raise error("manifest lists a data file twice", file=manifest.relpath)
    return out


def _relpath(uri: object, part: str, location: S3Location | None) -> str | None:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://") :].partition("/")
    if location is not None:
        if bucket != location.bucket:
            return None
        rel = location.relpath(key)
        if rel is None or not rel.startswith(part):
            return None
    else:
        cut = key.find(part)
        if cut < 0 or (cut > 0 and key[cut - 1] != "/"):
            return None
        rel = key[cut:]
    p = PurePosixPath(rel)
    if rel.endswith("/") or ".." in p.parts or "\\" in rel or p.as_posix() != rel:
        return None
    return rel


@dataclass(frozen=True)
class LocalExport:
    """A delivery found on disk: the manifest and its data files, all relative to ``root``."""

    root: Path
    manifest: Manifest
    data: tuple[str, ...]


def locate_local(
    root: Path,
    export: str,
    period: Period,
    error: ErrorFactory,
    precheck: Precheck | None = None,
) -> LocalExport | None:
    """The period's delivery under ``root``; None if there is no manifest (callers word it).

    Every listed file must exist: a manifest pointing at a missing file is an incomplete
    delivery, refused rather than read partially.
    """
    rel = manifest_relpath(export, period)
    path = root / rel
    if not path.is_file():
        return None
    manifest = parse_manifest(path.read_bytes(), rel, error, precheck)
    data = data_relpaths(manifest, export, period, error)
    for d, uri in zip(data, manifest.data_uris, strict=True):
        if not (root / d).is_file():
            raise error(
                f"manifest (execution {manifest.execution_id}) lists {uri} but the file is "
                "missing: the delivery is incomplete",
                file=d,
            )
    return LocalExport(root, manifest, tuple(data))
