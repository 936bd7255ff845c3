"""Pull one Data Exports delivery (CUR 2.0 or FOCUS) from S3 with boto3 into a staging folder.

Imported lazily by the connectors' ``fetch``, so configs and local reads never load boto3.

What a pull does, and why:

1. GET the period's manifest (it is written last, so it names a complete delivery). A missing
   bucket, key or permission fails at once, naming the bucket and key.
2. Map its ``dataFiles`` to keys; they must sit in the configured bucket under the prefix.
3. List each execution folder (paginated) and require every listed file to be there with the
   size HEAD reports: the manifest is the truth, the listing the proof it is satisfied.
4. GET each file with ``If-Match`` on the HEAD ETag, streamed to disk, and compare the bytes
   written with the size: an object replaced or cut short mid-pull is refused, not landed.

Retries are ours, not botocore's (its own are switched off), so one policy covers every call
and a permanent error costs one request: transient = connection errors, timeouts, 5xx,
throttling (429, SlowDown).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from connectors.aws_cur2 import exports
from connectors.aws_cur2.exports import ErrorFactory, Manifest, Precheck
from connectors.aws_cur2.s3config import S3Location, S3Options
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.retry import with_retries

log = logging.getLogger(__name__)
T = TypeVar("T")

_CHUNK = 1 << 20
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"})
_BAD_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another try: the network, the server's load, throttling."""
    network = (bex.HTTPClientError, bex.ConnectionError, bex.IncompleteReadError)
    if isinstance(exc, (*network, bex.FlexibleChecksumError)):
        # Connection refused/reset, timeouts, a body cut mid-stream or damaged in transit.
        # (botocore's ConnectionError covers refused and connect timeouts; HTTPClientError
        # covers read timeouts and connections closed mid-response.)
        return True
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _TRANSIENT_CODES or status == 429 or status >= 500
    return False


def client(opts: S3Options) -> Any:
    """An S3 client from the standard credential chain, with botocore's retries off."""
    session = boto3.session.Session(profile_name=opts.profile)
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=opts.timeout_seconds,
        read_timeout=opts.timeout_seconds,
        # Emulators and most S3-compatible endpoints need path-style addressing.
        s3={"addressing_style": "path"} if opts.endpoint_url else None,
        user_agent_extra="revshare-recon",
    )
    return session.client(
        "s3", region_name=opts.region, endpoint_url=opts.endpoint_url, config=config
    )


@dataclass(frozen=True)
class Pulled:
    """What landed in staging: the manifest (as parsed) and the data relpaths, with the
    manifest object's ETag (provenance: it changes whenever AWS rewrites the manifest)."""

    manifest: Manifest
    data: tuple[str, ...]
    manifest_etag: str


class _Puller:
    def __init__(self, opts: S3Options, loc: S3Location, error: ErrorFactory) -> None:
        self.opts = opts
        self.loc = loc
        self.error = error
        try:
            self.s3 = client(opts)
        except bex.ProfileNotFound:
            raise error(f"AWS profile {opts.profile!r} not found in the AWS config files") from None
        except bex.BotoCoreError as exc:  # e.g. a malformed config file
            raise error(f"cannot set up the S3 client: {_describe(exc)}") from None

    # -- one policy for every call ---------------------------------------------------------

    def call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries; translate what is left into a SourceError naming ``key``."""

        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning(
                "S3 %s %s: transient %s, attempt %d of %d, retrying in %.2f s",
                what, self._uri(key), _describe(exc), attempt, self.opts.retry_attempts, delay,
            )  # fmt: skip

        try:
            return with_retries(
                fn,
                transient=is_transient,
                attempts=self.opts.retry_attempts,
                base_delay=self.opts.retry_base_delay,
                on_retry=on_retry,
            )
        except SourceError:
            raise
        except bex.NoCredentialsError:
            raise self.error(
                "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                f"AWS_PROFILE or the profile setting) to read s3://{self.loc.bucket}"
            ) from None
        except bex.ClientError as exc:
            raise self._client_error(what, key, exc) from None
        except bex.BotoCoreError as exc:
            raise self.error(
                f"S3 {what} {self._uri(key)} failed{self._tries(exc)}: {_describe(exc)}"
            ) from None

    def _client_error(self, what: str, key: str, exc: bex.ClientError) -> SourceError:
        code = exc.response.get("Error", {}).get("Code", "")
        uri = self._uri(key)
        if code in _MISSING_BUCKET:
            return self.error(f"S3 bucket {self.loc.bucket} does not exist (reading {uri})")
        if code in _MISSING_KEY:
            return self.error(f"no object at {uri}", file=self.loc.relpath(key))
        if code in _DENIED:
            return self.error(f"access denied to {uri} (bucket {self.loc.bucket})")
        if code in _BAD_CREDENTIALS:
            return self.error(f"AWS rejected the credentials ({code}) reading {uri}")
        if code == "PreconditionFailed":
            return self.error(
                f"{uri} changed while it was being pulled (a new export run is being "
                "written); pull again later",
                file=self.loc.relpath(key),
            )
        return self.error(f"S3 {what} {uri} failed{self._tries(exc)}: {_describe(exc)}")

    def _uri(self, key: str) -> str:
        return f"s3://{self.loc.bucket}/{key}"

    def _tries(self, exc: BaseException) -> str:
        return f" after {self.opts.retry_attempts} attempt(s)" if is_transient(exc) else ""

    # -- the steps -------------------------------------------------------------------------

    def download(self, key: str, dest: Path, etag: str | None = None) -> tuple[int, str]:
        """Stream one object to ``dest``; return (bytes written, ETag). Retried as a whole."""

        def once() -> tuple[int, str]:
            kwargs: dict[str, str] = {"Bucket": self.loc.bucket, "Key": key}
            if etag:
                kwargs["IfMatch"] = etag
            resp = self.s3.get_object(**kwargs)
            with _atomic(dest) as f:
                written = 0
                for chunk in resp["Body"].iter_chunks(_CHUNK):
                    f.write(chunk)
                    written += len(chunk)
            return written, resp["ETag"]

        return self.call("GetObject", key, once)

    def listing(self, folder: str) -> dict[str, int]:
        """Key -> size under ``folder`` (a key prefix ending in '/'), every page."""

        def once() -> dict[str, int]:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.loc.bucket,
                Prefix=folder,
                PaginationConfig={"PageSize": self.opts.list_page_size},
            )
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

        return self.call("ListObjectsV2", folder, once)

    def head(self, key: str) -> tuple[int, str]:
        resp = self.call(
            "HeadObject", key, lambda: self.s3.head_object(Bucket=self.loc.bucket, Key=key)
        )
        return resp["ContentLength"], resp["ETag"]


def pull(
    opts: S3Options,
    loc: S3Location,
    export: str,
    period: Period,
    staging: Path,
    error: ErrorFactory,
    precheck: Precheck | None = None,
) -> Pulled:
    """Download the period's current delivery into ``staging`` in the local layout."""
    p = _Puller(opts, loc, error)
    man_rel = exports.manifest_relpath(export, period)
    man_key = loc.key(man_rel)
    man_path = staging / man_rel
    try:
        _, man_etag = p.download(man_key, man_path)
    except SourceError as e:
        if e.file == man_rel:  # NoSuchKey: word it as the reader's "no manifest yet"
            raise error(
                f"no Data Exports manifest at {loc.uri(man_rel)} for {period} (AWS writes it "
                "after the data files; the export may not have run yet, or export_name/path "
                "are wrong)",
                file=man_rel,
            ) from None
        raise
    manifest = exports.parse_manifest(man_path.read_bytes(), man_rel, error, precheck)
    data = exports.data_relpaths(manifest, export, period, error, location=loc)

    folders = sorted({PurePosixPath(loc.key(d)).parent.as_posix() + "/" for d in data})
    listed: dict[str, int] = {}
    for folder in folders:
        listed.update(p.listing(folder))
    for rel, uri in zip(data, manifest.data_uris, strict=True):
        key = loc.key(rel)
        if key not in listed:
            raise error(
                f"manifest (execution {manifest.execution_id}) lists {uri} but the object "
                "does not exist: the delivery is incomplete",
                file=rel,
            )
        size, etag = p.head(key)
        if size != listed[key]:
            raise error(
                f"{uri}: the listing says {listed[key]} bytes but HEAD says {size}: the "
                "object is being rewritten; pull again later",
                file=rel,
            )
        written, _ = p.download(key, staging / rel, etag=etag)
        if written != size:
            (staging / rel).unlink(missing_ok=True)
            raise error(
                f"{uri}: wrote {written} bytes but the object has {size}: refusing a "
                "truncated download",
                file=rel,
            )
    return Pulled(manifest, tuple(data), man_etag)


@contextmanager
def _atomic(dest: Path) -> Iterator[Any]:
    """Write to a sibling temp file and rename, so a failed try leaves no half file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with tmp.open("wb") as f:
            yield f
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _describe(exc: BaseException) -> str:
    """Type and error code only: enough to act on, and never a header or a credential."""
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{err.get('Code', '?')} (HTTP {status})"
    return type(exc).__name__
