"""Pull a period's statement files from S3, GCS, Azure Blob or an SFTP drop into staging.

Imported only by ``StatementFilesConnector.fetch``, so config loads and local reads never load
an SDK. Every store is used the same way: list the period's folder (``<prefix>/<YYYY-MM>/``),
refuse any name that would leave staging (``revshare.store.safe_relpath``), download each
``.csv``/``.json``/``.xlsx`` to ``staging/<YYYY-MM>/<name>`` (written to a temporary name,
renamed when complete, its size checked against the listing), and let the local reader take
it from there, so normalization is one code path.

Retries follow ``revshare.retry`` (transient = network, timeouts, 5xx, throttling); the SDKs'
own retries are off where they have any. Errors name the location, never a secret: SDK texts
that may carry URLs or tokens are reduced to their type and status code.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from revshare.errors import SourceError
from revshare.periods import Period
from revshare.retry import with_retries
from revshare.store import safe_relpath

if TYPE_CHECKING:
    from connectors.statement_files import StatementFilesConnector
    from connectors.statement_files.settings import RemoteLocation

log = logging.getLogger(__name__)
T = TypeVar("T")
SUFFIXES = (".csv", ".json", ".xlsx")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the period folder, as listed
    size: int
    ref: Any  # what the store needs to fetch exactly this object (key, blob, path)


class Store(Protocol):
    def list(self, folder: str) -> list[Entry]: ...
    def get(self, entry: Entry, dest: Path) -> int: ...
    def close(self) -> None: ...


def pull(conn: StatementFilesConnector, loc: RemoteLocation, period: Period, staging: Path) -> None:
    """Download every statement file of ``period`` to ``staging/<period>/``."""
    store = _open(conn, loc)
    try:
        entries = store.list(loc.folder(period))
        picked = select(conn.source_name, period, entries)
        if not picked:
            raise conn.error(
                f"no statement for {period} at {loc.uri(str(period))}/ "
                f"(no {', '.join(SUFFIXES)} file)"
            )
        root = staging.resolve()
        for entry, rel in picked:
            dest = staging / rel
            if not dest.resolve().is_relative_to(root):  # belt and braces: symlinked staging
                raise conn.error(f"unsafe file path in delivery: {rel!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            written = store.get(entry, dest)
            if written != entry.size:
                dest.unlink(missing_ok=True)
                raise conn.error(
                    f"{loc.uri(rel)}: wrote {written} bytes but the listing says {entry.size}: "
                    "the file changed or was cut short; pull again later",
                    file=PurePosixPath(rel).name,
                )
        log.info("%s: pulled %d statement file(s) for %s from %s",
                 conn.source_name, len(picked), period, loc.uri())  # fmt: skip
    finally:
        store.close()


def select(source: str, period: Period, entries: list[Entry]) -> list[tuple[Entry, str]]:
    """(entry, relpath in staging) of the statement files, refusing any escaping name.

    Every listed name is checked, not only the ones we would download: a key such as
    ``2026-09/../../evil.csv`` in the period's folder means the drop is not what we think.
    Sub-folders are skipped, as the local reader skips them.
    """
    out = []
    for e in sorted(entries, key=lambda x: x.name):
        if not e.name or e.name.endswith("/"):
            continue  # a folder placeholder object
        raw = f"{period}/{e.name}"
        try:  # the name alone (no absolute path, '..' or backslash), and joined to the period
            safe_relpath(source, e.name)
            rel = safe_relpath(source, raw)
        except SourceError:
            raise SourceError(
                source,
                f"unsafe file path in delivery: {raw!r} (it would leave the period's folder)",
            ) from None
        parts = PurePosixPath(rel).parts
        if len(parts) == 2 and parts[1].lower().endswith(SUFFIXES):
            out.append((e, rel))
    return out


def _open(conn: StatementFilesConnector, loc: RemoteLocation) -> Store:
    return {"s3": _S3, "gs": _Gcs, "az": _Azure, "sftp": _Sftp}[loc.scheme](conn, loc)


def _retry(conn: StatementFilesConnector, what: str, fn: Callable[[], T],
           transient: Callable[[BaseException], bool]) -> T:  # fmt: skip
    s = conn.settings

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        log.warning("%s: %s: transient %s, attempt %d of %d, retrying in %.2f s",
                    conn.source_name, what, type(exc).__name__, attempt, s.retry_attempts,
                    delay)  # fmt: skip

    return with_retries(fn, transient=transient, attempts=s.retry_attempts,
                        base_delay=s.retry_base_delay, on_retry=on_retry)  # fmt: skip


def _to_file(dest: Path, write: Callable[[io.BufferedWriter], None]) -> int:
    """Write through a sibling temp file renamed into place; a failed try leaves nothing."""
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest.stat().st_size


def _env_secret(conn: StatementFilesConnector, name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value.strip():
        raise conn.error(f"environment variable {name} (the {what}) is not set")
    return value


# -- S3: the AWS connectors' puller (retries, error mapping, atomic streamed writes) ----------


class _S3:
    def __init__(self, conn: StatementFilesConnector, loc: RemoteLocation) -> None:
        from connectors.aws_cur2 import remote
        from connectors.aws_cur2.s3config import S3Location

        self.p = remote._Puller(conn.settings, S3Location(loc.container, loc.prefix), conn.error)

    def list(self, folder: str) -> list[Entry]:
        return [Entry(k[len(folder) :], size, k) for k, size in self.p.listing(folder).items()]

    def get(self, entry: Entry, dest: Path) -> int:
        return self.p.download(entry.ref, dest)[0]

    def close(self) -> None:
        pass


# -- Google Cloud Storage -----------------------------------------------------------------------


class _Gcs:
    def __init__(self, conn: StatementFilesConnector, loc: RemoteLocation) -> None:
        import google.auth
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc
        from google.cloud import storage

        self.conn, self.loc, self.gexc, self.aexc = conn, loc, gexc, aexc
        self.timeout = conn.settings.timeout_seconds
        creds, project = None, conn.settings.project
        # The emulator needs no credentials; anything else (or an explicit key) uses ADC.
        if not os.environ.get("STORAGE_EMULATOR_HOST") or os.environ.get(
            "GOOGLE_APPLICATION_CREDENTIALS"
        ):
            try:
                scope = "https://www.googleapis.com/auth/devstorage.read_only"
                creds, found = google.auth.default(scopes=[scope])
            except aexc.DefaultCredentialsError as exc:
                raise conn.error(
                    "no usable Google credentials (set GOOGLE_APPLICATION_CREDENTIALS or "
                    f"Application Default Credentials) to read gs://{loc.container} "
                    f"({type(exc).__name__})"
                ) from None
            project = project or found
        self.bucket = storage.Client(project=project, credentials=creds).bucket(loc.container)

    def _transient(self, exc: BaseException) -> bool:
        g, a = self.gexc, self.aexc
        if isinstance(exc, a.RefreshError):
            return bool(getattr(exc, "retryable", False))
        retry = (g.TooManyRequests, g.InternalServerError, g.BadGateway, g.ServiceUnavailable,
                 g.GatewayTimeout, a.TransportError, ConnectionError, TimeoutError)  # fmt: skip
        import requests

        return isinstance(exc, (*retry, requests.ConnectionError, requests.Timeout))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        g, a = self.gexc, self.aexc
        where = self.loc.uri()
        try:
            return _retry(self.conn, what, fn, self._transient)
        except SourceError:
            raise
        except a.RefreshError:
            raise self.conn.error(
                f"Google rejected the credentials ({what} {where}): check "
                "GOOGLE_APPLICATION_CREDENTIALS or the credentials block"
            ) from None
        except g.NotFound:
            raise self.conn.error(
                f"GCS bucket {self.loc.container} does not exist ({where})"
            ) from None
        except (g.Forbidden, g.Unauthorized) as exc:
            raise self.conn.error(f"access denied to {where} (HTTP {exc.code})") from None
        except Exception as exc:
            code = getattr(exc, "code", None)
            tries = f" after {self.conn.settings.retry_attempts} attempt(s)"
            tries = tries if self._transient(exc) else ""
            raise self.conn.error(
                f"{what} {where} failed{tries}: {type(exc).__name__}"
                + (f" (HTTP {code})" if code else "")
            ) from None

    def list(self, folder: str) -> list[Entry]:
        def once() -> list[Entry]:
            blobs = self.bucket.client.list_blobs(
                self.bucket, prefix=folder, retry=None, timeout=self.timeout
            )
            return [Entry(b.name[len(folder) :], int(b.size or 0), b) for b in blobs]

        return self.call("listing", once)

    def get(self, entry: Entry, dest: Path) -> int:
        blob = entry.ref
        return self.call(f"downloading {blob.name}", lambda: _to_file(dest, lambda f: (
            blob.download_to_file(f, if_generation_match=blob.generation, retry=None,
                                  timeout=self.timeout))))  # fmt: skip

    def close(self) -> None:
        pass


# -- Azure Blob Storage -------------------------------------------------------------------------


class _Azure:
    def __init__(self, conn: StatementFilesConnector, loc: RemoteLocation) -> None:
        from azure.core import MatchConditions
        from azure.storage.blob import BlobServiceClient

        # The cost connector's policy: what is transient, and a filter that scrubs SAS
        # signatures from urllib3's DEBUG lines.
        from connectors.azure_cost.remote import _guard_urllib3_log, is_transient

        self.conn, self.loc, self.transient = conn, loc, is_transient
        self.match = MatchConditions.IfNotModified
        s = conn.settings
        _guard_urllib3_log()
        t = s.timeout_seconds
        opts = {"retry_total": 0, "connection_timeout": t, "read_timeout": t}
        if s.connection_string_env:
            self.hint = f"the connection string in ${s.connection_string_env}"
            secret = _env_secret(conn, s.connection_string_env, "storage connection string")
            try:
                svc = BlobServiceClient.from_connection_string(secret, **opts)
            except ValueError:
                raise conn.error(f"{self.hint} is malformed") from None
        else:
            assert s.account_url is not None and s.sas_token_env is not None
            self.hint = f"the SAS token in ${s.sas_token_env}"
            sas = _env_secret(conn, s.sas_token_env, "SAS token").strip().lstrip("?")
            svc = BlobServiceClient(s.account_url, credential=sas, **opts)
        # Named by account and host only: the client's .url may carry a SAS token.
        self.where = f"{loc.uri()} (account {svc.account_name}, {svc.primary_hostname})"
        self.client = svc.get_container_client(loc.container)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            return _retry(self.conn, what, fn, self.transient)
        except HttpResponseError as e:
            code = str(getattr(e.error_code, "value", e.error_code) or "")
            if code == "ContainerNotFound":
                raise self.conn.error(f"container not found: {self.where}") from None
            if e.status_code in (401, 403):
                raise self.conn.error(
                    f"access denied to {self.where} (HTTP {e.status_code} {code}): "
                    f"check {self.hint}"
                ) from None
            raise self.conn.error(
                f"{what} in {self.where} failed: HTTP {e.status_code} {code}".rstrip()
            ) from None
        except AzureError as e:
            raise self.conn.error(f"{what} in {self.where} failed: {type(e).__name__}") from None

    def list(self, folder: str) -> list[Entry]:
        def once() -> list[Entry]:
            blobs = self.client.list_blobs(name_starts_with=folder)
            return [Entry(b.name[len(folder) :], int(b.size), (b.name, b.etag)) for b in blobs]

        return self.call("listing", once)

    def get(self, entry: Entry, dest: Path) -> int:
        name, etag = entry.ref
        return self.call(f"downloading {name}", lambda: _to_file(dest, lambda f: (
            self.client.download_blob(name, etag=etag, match_condition=self.match)
            .readinto(f))))  # fmt: skip

    def close(self) -> None:
        self.client.close()


# -- SFTP (paramiko), strict host-key checking ---------------------------------------------------


class UnknownHostKey(Exception):
    """The server offered a host key that known_hosts does not hold (no trust on first use)."""


class _Sftp:
    """One SSH session, opened lazily and reopened after a transient failure.

    Host keys come only from the configured known_hosts file (not ~/.ssh, not the system
    files); an unknown key is refused, a different key is refused louder. Only the configured
    secret is offered: no agent, no keys found on disk.
    """

    def __init__(self, conn: StatementFilesConnector, loc: RemoteLocation) -> None:
        import paramiko

        self.pm, self.conn, self.loc = paramiko, conn, loc
        s = conn.settings
        assert s.known_hosts is not None
        self.known_hosts = conn.local_root(s.known_hosts)
        if not self.known_hosts.is_file():
            raise conn.error(f"known_hosts file {s.known_hosts} not found (needed for {loc.uri()})")
        self.where = f"sftp://{loc.user}@{loc.container}:{loc.port}"
        self.password = (
            _env_secret(conn, s.password_env, "SFTP password") if s.password_env else None
        )
        self.pkey = self._key() if (s.private_key_env or s.private_key_path) else None
        self.hint = (f"private key from ${s.private_key_env}" if s.private_key_env
                     else f"private key file {s.private_key_path}" if s.private_key_path
                     else f"password from ${s.password_env}")  # fmt: skip
        self.client: Any = None
        self.sftp: Any = None

    def _key(self) -> Any:
        s, pm = self.conn.settings, self.pm
        phrase = (
            _env_secret(self.conn, s.passphrase_env, "key passphrase") if s.passphrase_env else None
        )
        if s.private_key_path:
            what = f"private key file {s.private_key_path}"
            try:
                path = self.conn.local_root(s.private_key_path)
                return pm.PKey.from_path(path, phrase.encode() if phrase else None)
            except (OSError, ValueError, TypeError, pm.SSHException) as exc:
                raise self.conn.error(f"cannot read the {what} ({type(exc).__name__})") from None
        text = _env_secret(self.conn, str(s.private_key_env), "SFTP private key")
        for cls in (pm.Ed25519Key, pm.ECDSAKey, pm.RSAKey):
            try:
                return cls.from_private_key(io.StringIO(text), password=phrase)
            except (ValueError, TypeError, pm.SSHException):
                continue
        raise self.conn.error(
            f"the private key in ${s.private_key_env} cannot be read (not an OpenSSH or PEM "
            "Ed25519/ECDSA/RSA key, or a wrong passphrase)"
        )

    def _connect(self) -> None:
        pm, loc = self.pm, self.loc
        known = self.conn.settings.known_hosts

        class Refuse(pm.MissingHostKeyPolicy):
            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                raise UnknownHostKey(
                    f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is not in "
                    f"the known_hosts file {known}: refusing to connect (add the partner's "
                    "published host key to that file)"
                )

        client = pm.SSHClient()
        client.get_host_keys().load(str(self.known_hosts))
        client.set_missing_host_key_policy(Refuse())
        t = self.conn.settings.timeout_seconds
        try:
            client.connect(
                loc.container, port=loc.port, username=loc.user, pkey=self.pkey,
                password=self.password, look_for_keys=False, allow_agent=False,
                timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t,
            )  # fmt: skip
            self.sftp = client.open_sftp()
            self.sftp.get_channel().settimeout(t)
        except BaseException:
            client.close()
            raise
        self.client = client

    def _transient(self, exc: BaseException) -> bool:
        pm = self.pm
        if isinstance(exc, (UnknownHostKey, pm.BadHostKeyException, pm.AuthenticationException)):
            return False
        # Refused/reset connections, timeouts, a session dropped mid-transfer, banner errors.
        return isinstance(exc, (OSError, EOFError, socket.timeout, pm.SSHException)) and not (
            isinstance(exc, FileNotFoundError | PermissionError)
        )

    def call(self, what: str, fn: Callable[[], T]) -> T:
        pm = self.pm

        def once() -> T:
            if self.sftp is None:
                self._connect()
            try:
                return fn()
            except BaseException as exc:
                if self._transient(exc):
                    self.close()  # the next try starts a fresh session
                raise

        try:
            return _retry(self.conn, what, once, self._transient)
        except SourceError:
            raise
        except UnknownHostKey as exc:
            raise self.conn.error(f"{self.where}: {exc}") from None
        except pm.BadHostKeyException:
            raise self.conn.error(
                f"{self.where}: the host key differs from the one in the known_hosts file "
                f"{self.conn.settings.known_hosts}: refusing to connect (the server was re-keyed, "
                "or someone is in between; confirm the new key with the partner)"
            ) from None
        except pm.AuthenticationException:
            raise self.conn.error(
                f"{self.where} rejected the credentials for user {self.loc.user} ({self.hint})"
            ) from None
        except PermissionError:
            raise self.conn.error(f"{what} on {self.where}: permission denied") from None
        except Exception as exc:
            tries = f" after {self.conn.settings.retry_attempts} attempt(s)"
            tries = tries if self._transient(exc) else ""
            raise self.conn.error(
                f"{what} on {self.where} failed{tries}: {type(exc).__name__}"
            ) from None

    def list(self, folder: str) -> list[Entry]:
        def once() -> list[Entry]:
            try:
                attrs = self.sftp.listdir_attr(folder)
            except FileNotFoundError:
                return []  # no folder for the period: reported as "no statement"
            regular = [a for a in attrs if a.st_mode is not None and stat.S_ISREG(a.st_mode)]
            return [
                Entry(a.filename, int(a.st_size or 0), f"{folder}/{a.filename}") for a in regular
            ]

        return self.call(f"listing {folder}", once)

    def get(self, entry: Entry, dest: Path) -> int:
        return self.call(f"downloading {entry.ref}", lambda: _to_file(
            dest, lambda f: self.sftp.getfo(entry.ref, f)))  # fmt: skip

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = self.sftp = None
