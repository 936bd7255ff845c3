"""Pull a Cost Management export from Blob Storage with azure-storage-blob.

Only this module imports the SDK, and only ``AzureCostConnector.fetch`` imports it, so local
use does not pay for it. The choice of run is the local one (``runs.py``), made from listings:
list ``ROOT/EXPORT/`` for the period's date-range folders, list each folder flat (names and
sizes come back with the listing, so completeness costs no request per blob), read each run's
manifest, and take the newest run whose blobs all exist with the promised byteCount. Only that
run's parts are downloaded, streamed to ``staging`` in the local layout, and the local
``locate_under`` then checks and describes them again, so both modes share one code path.

Retries are ours (``revshare.retry``), not the SDK's (``retry_total=0``): one policy for every
connector, and permanent errors (missing container, refused credentials) fail on the first
answer. Secrets are read from the environment at the last moment, held as ``SecretStr`` and
never put in a message: HTTP errors are reported by status and error code only, connection
errors by their first line with any ``sig=`` scrubbed, and the client's ``.url`` (which carries
a SAS) is never printed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobPrefix, BlobServiceClient, ContainerClient
from pydantic import SecretStr

from connectors.azure_cost import runs
from connectors.base import Delivery
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.retry import with_retries

if TYPE_CHECKING:
    from connectors.azure_cost import AzureCostConnector

log = logging.getLogger(__name__)
T = TypeVar("T")

#: 408 timeout, 429 throttling, 500 InternalError, 502/504 gateways, 503 ServerBusy.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: A manifest lists blobs; a real one is a few KB. Larger means it is not a manifest.
MANIFEST_MAX_BYTES = 16 << 20
#: Download in 4 MiB ranges: bounded memory whatever the part size.
CHUNK = 4 << 20
_SECRETISH = re.compile(r"(?i)(sig=|accountkey=|sharedaccesssignature=)[^&;\s]*")


class _RedactSas(logging.Filter):
    """Scrub SAS signatures from urllib3's DEBUG lines.

    azure-core's logging policy redacts query strings, but urllib3 (under the requests
    transport) logs every request line, SAS included, at DEBUG. A host app that turns DEBUG on
    must not write the token to its logs, so the filter goes on that logger when we build a
    client (once; it only rewrites lines that carry ``sig=``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "sig=" in msg.lower():
            record.msg, record.args = _SECRETISH.sub(lambda m: m.group(1) + "REDACTED", msg), ()
        return True


def _guard_urllib3_log() -> None:
    target = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactSas) for f in target.filters):
        target.addFilter(_RedactSas())


def is_transient(exc: BaseException) -> bool:
    """Worth another try: connection/read failures and timeouts, throttling, 5xx."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code in TRANSIENT_STATUS
    return isinstance(exc, (ConnectionError, TimeoutError))


def _describe(exc: BaseException) -> str:
    """Exception type, HTTP status and service error code; no SDK text (it may hold URLs)."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return f"{type(exc).__name__} HTTP {exc.status_code} {_code(exc)}".rstrip()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _SECRETISH.sub(lambda m: m.group(1) + "***", text)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _code(exc: HttpResponseError) -> str:
    code = exc.error_code
    return str(getattr(code, "value", code) or "")


def _secret_from_env(conn: AzureCostConnector, name: str, what: str) -> SecretStr:
    value = os.environ.get(name, "").strip()
    if not value:
        raise conn.error(f"environment variable {name} (the {what}) is not set")
    return SecretStr(value)


class _Container:
    """The export's container, with every call retried and every failure named."""

    def __init__(self, conn: AzureCostConnector) -> None:
        self.conn = conn
        s = conn._settings
        assert s.container is not None
        self.s = s
        _guard_urllib3_log()
        opts = {
            "retry_total": 0,  # retries are ours: one policy, permanent errors fail fast
            "connection_timeout": 20,
            "read_timeout": 120,
            "max_single_get_size": CHUNK,
            "max_chunk_get_size": CHUNK,
        }
        if s.connection_string_env:
            secret = _secret_from_env(conn, s.connection_string_env, "storage connection string")
            self.credential_hint = f"the connection string in ${s.connection_string_env}"
            try:
                svc = BlobServiceClient.from_connection_string(secret.get_secret_value(), **opts)
            except ValueError:
                raise conn.error(
                    f"{self.credential_hint} is malformed (container {s.container!r})"
                ) from None
        else:
            assert s.account_url is not None and s.sas_token_env is not None
            secret = _secret_from_env(conn, s.sas_token_env, "SAS token")
            self.credential_hint = f"the SAS token in ${s.sas_token_env}"
            sas = secret.get_secret_value().lstrip("?")
            svc = BlobServiceClient(s.account_url, credential=sas, **opts)
        # Named by account and host only: the client's .url would carry a SAS token.
        self.where = (
            f"container {s.container!r} of account {svc.account_name} "
            f"({svc.scheme}://{svc.primary_hostname})"
        )
        self.client: ContainerClient = svc.get_container_client(s.container)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request (or a listing), retrying transient failures; map the rest."""

        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning("%s: %s failed (%s); retry %d in %.2f s",
                        self.conn.source_name, what, _describe(exc), attempt, delay)  # fmt: skip

        try:
            return with_retries(fn, transient=is_transient, attempts=self.s.retry_attempts,
                                base_delay=self.s.retry_base_delay, on_retry=on_retry)  # fmt: skip
        except HttpResponseError as e:
            raise self._permanent(what, e) from None
        except AzureError as e:
            tries = f" after {self.s.retry_attempts} attempt(s)" if is_transient(e) else ""
            raise self.conn.error(f"{what} in {self.where} failed{tries}: {_describe(e)}") from None

    def _permanent(self, what: str, e: HttpResponseError) -> SourceError:
        status, code = e.status_code, _code(e)
        if code == "ContainerNotFound":
            return self.conn.error(f"{self.where} not found ({what})")
        if status in (401, 403):
            return self.conn.error(
                f"access denied to {self.where} (HTTP {status} {code}): "
                f"check {self.credential_hint}"
            )
        if code == "ConditionNotMet" or status == 412:
            return self.conn.error(
                f"{what} in {self.where}: the blob changed while it was being read "
                "(a run is being rewritten?); pull again"
            )
        tries = f" after {self.s.retry_attempts} attempt(s)" if is_transient(e) else ""
        return self.conn.error(f"{what} in {self.where} failed{tries}: {_describe(e)}")

    def list_prefixes(self, prefix: str) -> list[str]:
        items = self.call(f"listing {prefix}", lambda: list(
            self.client.walk_blobs(name_starts_with=prefix, delimiter="/")))  # fmt: skip
        return sorted(i.name for i in items if isinstance(i, BlobPrefix))

    def list_sizes(self, prefix: str) -> dict[str, tuple[int, str]]:
        """name -> (size, etag) of every committed blob under ``prefix``."""
        items = self.call(f"listing {prefix}", lambda: list(
            self.client.list_blobs(name_starts_with=prefix)))  # fmt: skip
        return {b.name: (int(b.size), str(b.etag)) for b in items}

    def read_small(self, name: str, size: int) -> tuple[bytes, str]:
        """A manifest's bytes and etag (read whole: it is small, checked above)."""
        if size > MANIFEST_MAX_BYTES:
            raise ValueError(f"manifest.json has {size} bytes; not a manifest")

        def get() -> tuple[bytes, str]:
            d = self.client.download_blob(name)
            return d.readall(), str(d.properties.etag)

        return self.call(f"reading {name}", get)

    def download(self, name: str, dest: Path, etag: str) -> None:
        """Stream one blob to ``dest``; the etag pins the version the listing checked."""
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)

        def get() -> None:
            with part.open("wb") as f:  # a retry starts the file again
                self.client.download_blob(
                    name, etag=etag, match_condition=MatchConditions.IfNotModified
                ).readinto(f)

        try:
            self.call(f"downloading {name}", get)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)


def _sizes_under(blobs: dict[str, tuple[int, str]], prefix: str) -> Callable[[str], int | None]:
    def size_of(inner: str) -> int | None:
        hit = blobs.get(prefix + inner)
        return hit[0] if hit else None

    return size_of


def fetch_run(conn: AzureCostConnector, period: Period, staging: Path) -> Delivery:
    """Download the newest complete run of ``period`` into ``staging`` (the local layout)."""
    s = conn._settings
    if staging.exists() and any(staging.iterdir()):
        raise ValueError(f"staging folder must be empty: {staging}")
    box = _Container(conn)
    root = s.blob_root
    export = f"{root}{s.export_name}/"
    ranges = [p for p in box.list_prefixes(export)
              if runs.range_matches(p[len(export):].rstrip("/"), period)]  # fmt: skip
    if not ranges:
        raise conn.error(f"no export run for {period} in {box.where} under {export} "
                         f"(no {period.start:%Y%m%d}-YYYYMMDD/ folder)")  # fmt: skip

    complete: list[tuple[runs.Run, str, bytes, str, dict[str, tuple[int, str]]]] = []
    skipped: list[str] = []
    for range_prefix in ranges:
        blobs = box.list_sizes(range_prefix)
        for name in sorted(n for n in blobs if runs.is_run_manifest(n[len(range_prefix) :])):
            run_prefix = name[: -len(runs.MANIFEST)]
            rel = run_prefix[len(root) :].rstrip("/")
            try:
                text, etag = box.read_small(name, blobs[name][0])
                run = runs.parse_run(text, rel)
                runs.check_complete(run, _sizes_under(blobs, run_prefix))
            except ValueError as e:
                skipped.append(f"{rel}: {e}")
                continue
            complete.append((run, run_prefix, text, etag, blobs))
    if not complete:
        why = "; ".join(skipped) if skipped else "no run with a manifest.json"
        raise conn.error(f"no complete export run for {period} in {box.where}: {why}")

    run = runs.newest(c[0] for c in complete)
    _, run_prefix, text, etag, blobs = next(c for c in complete if c[0] is run)
    run_dir = staging / run.rel
    for inner, _size in run.blobs:
        box.download(run_prefix + inner, run_dir / inner, blobs[run_prefix + inner][1])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.MANIFEST).write_bytes(text)  # the exact bytes the choice was made from
    log.info("%s: pulled run %s (%d blobs) from %s",
             conn.source_name, run.rel, len(run.blobs), box.where)  # fmt: skip

    tag = etag.strip('"')
    local = conn.locate_under(staging, period)  # re-checks the bytes that arrived
    if local.metadata.get("run") != run.rel:
        raise conn.error(f"downloaded run {run.rel} did not check out in staging")
    metadata = {**local.metadata, "container": str(s.container), "source": box.where,
                "manifestEtag": tag, "runsComplete": str(len(complete))}  # fmt: skip
    metadata.pop("skippedIncompleteRuns", None)
    if skipped:
        metadata["skippedIncompleteRuns"] = "; ".join(skipped)
    # runId names the run; the manifest's etag changes if that run's manifest is rewritten.
    version = f"{run.run_id or run.rel}@{tag}"
    return Delivery(files=local.files, version=version, metadata=metadata)
