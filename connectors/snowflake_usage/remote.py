"""Live pull of the usage views with snowflake-connector-python, into the local layout.

Imported lazily by ``SnowflakeUsageConnector.fetch`` so local use never loads the SDK. Each
attempt opens one connection, runs the three SELECTs of ``remote_sql`` and streams every
result chunk (``fetch_arrow_batches``) through a Parquet writer, then writes the
``unload_manifest.json`` the local reader expects; the delivery is then read back with the
local manifest logic, so local and remote share one layout and one ``normalize_sql``.

Version: Snowflake keeps no version for these views (LAST_ALTERED of a shared view changes
with its definition, not its rows), so the version is a hash of the pulled content: the
SHA-256 of the Parquet files, which the stable row order and fixed row groups make depend on
the rows only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector
from pydantic import SecretStr
from snowflake.connector import errors as sf

from connectors.base import Delivery
from connectors.snowflake_usage import helpers as h
from connectors.snowflake_usage import remote_sql as q
from connectors.snowflake_usage.settings import SnowflakeUsageSettings
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.retry import with_retries
from revshare.store import file_digest

if TYPE_CHECKING:
    from connectors.snowflake_usage import SnowflakeUsageConnector

log = logging.getLogger(__name__)

#: Rows per Parquet row group, fixed so the bytes do not depend on Snowflake's chunking.
ROW_GROUP = 131_072
DATA_FILE = "data_0_0_0.snappy.parquet"

_HTTP_TRANSIENT = (
    sf.ServiceUnavailableError,
    sf.GatewayTimeoutError,
    sf.InternalServerError,
    sf.BadGatewayError,
    sf.RequestTimeoutError,
    sf.TooManyRequests,
    sf.OtherHTTPRetryableError,
)
#: OperationalError numbers the SDK raises after its own retries ran out: could not connect
#: (250001), connection closed (250002), request failed (250003), server error (250005),
#: login timeout (251011).
_NETWORK_ERRNOS = {250001, 250002, 250003, 250005, 251011}
#: Session or master token gone (server restarted, session expired): a new login helps.
_SESSION_ERRNOS = {390104, 390111, 390112, 390113, 390114}


def is_transient(exc: BaseException) -> bool:
    """True for failures a later attempt can get past; everything else fails at once
    (bad credentials, a missing or unauthorized view, a wrong column type)."""
    if isinstance(exc, _HTTP_TRANSIENT):
        return True
    if isinstance(exc, sf.NonRetryableTlsError | sf.RevocationCheckError):
        return False
    if isinstance(exc, sf.Error):
        return exc.errno in _NETWORK_ERRNOS or exc.errno in _SESSION_ERRNOS
    return isinstance(exc, ConnectionError | TimeoutError)


@dataclass(frozen=True)
class _Secrets:
    password: SecretStr | None = None
    key_path: SecretStr | None = None
    passphrase: SecretStr | None = None

    def values(self) -> list[str]:
        return [s.get_secret_value() for s in (self.password, self.key_path, self.passphrase) if s]


class _Pull:
    """One pull of one period; ``step`` says what it was doing when something failed."""

    def __init__(
        self,
        conn: SnowflakeUsageConnector,
        period: Period,
        staging: Path,
        sku_keys: tuple[str, ...] | None = None,
    ) -> None:
        assert isinstance(conn.settings, SnowflakeUsageSettings)
        self.conn, self.s, self.period, self.staging = conn, conn.settings, period, staging
        #: Pushdown: the whole period aggregated in Snowflake (``grain``), or afterwards the
        #: rows of these SKU keys only (the lines behind discrepancies).
        self.sku_keys = sku_keys
        self.grain = self.s.pushdown and sku_keys is None
        self.rows_pulled = 0
        self.secrets = self._read_secrets()
        self.step = f"connecting to Snowflake account {self.s.account} as {self.s.user}"

    def _env(self, field: str, name: str | None) -> SecretStr | None:
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            raise self.conn.error(f"environment variable {name} ({field}) is not set")
        return SecretStr(value)

    def _read_secrets(self) -> _Secrets:
        s = self.s
        return _Secrets(
            self._env("password_env", s.password_env),
            self._env("private_key_path_env", s.private_key_path_env),
            self._env("private_key_passphrase_env", s.private_key_passphrase_env),
        )

    def connect_args(self) -> dict[str, Any]:
        s, sec = self.s, self.secrets
        args: dict[str, Any] = {
            "account": s.account,
            "user": s.user,
            "role": s.role,
            "warehouse": s.warehouse,
            "protocol": s.protocol,
            # server-side binding, so values never become SQL text
            "paramstyle": "qmark",
            # NUMBER(p,s>0) as Arrow decimal128, not float64 (the SDK's default)
            "arrow_number_to_decimal": True,
            "session_parameters": {"TIMEZONE": "UTC", "QUERY_TAG": "revshare-recon"},
            "login_timeout": s.login_timeout,
            "network_timeout": s.network_timeout,
            "client_session_keep_alive": False,
        }
        if s.host:
            args["host"] = s.host
        if s.port:
            args["port"] = s.port
        if sec.password is not None:
            args["password"] = sec.password.get_secret_value()
        if sec.key_path is not None:
            args["authenticator"] = "SNOWFLAKE_JWT"
            args["private_key_file"] = sec.key_path.get_secret_value()
            if sec.passphrase is not None:
                args["private_key_file_pwd"] = sec.passphrase.get_secret_value()
        return {k: v for k, v in args.items() if v is not None}

    # -- one attempt ----------------------------------------------------------------------

    def attempt(self) -> Delivery:
        folder = self.staging / str(self.period)
        if folder.exists():  # a failed earlier attempt: start clean
            shutil.rmtree(folder)
        self.step = f"connecting to Snowflake account {self.s.account} as {self.s.user}"
        written: list[Path] = []
        with snowflake.connector.connect(**self.connect_args()) as con:
            self.rows_pulled = 0
            for query in q.queries(self.s, self.period, grain=self.grain, sku_keys=self.sku_keys):
                self.step = f"reading {query.source}"
                cur = con.cursor()
                try:
                    cur.execute(query.sql, query.params)
                    path = folder / query.view / DATA_FILE
                    written.append(self._write(query, cur.fetch_arrow_batches(), path))
                finally:
                    cur.close()
        return self._deliver(folder, written)

    def _conform(self, query: q.ViewQuery, table: pa.Table) -> pa.Table:
        """A result chunk in the layout's types. Money must arrive as decimals: a float
        (fakesnow sums, or a session without arrow_number_to_decimal) is refused, not cast."""
        target = q.schema(query.schema_key)
        missing = [f.name for f in target if f.name not in table.column_names]
        if missing:
            raise self.conn.error(
                f"{query.source} returned no column(s) {', '.join(missing)}", column=missing[0]
            )
        cols = []
        for f in target:
            col = table.column(f.name)
            if pa.types.is_decimal(f.type) and pa.types.is_floating(col.type):
                raise self.conn.error(
                    f"{query.source}.{f.name} came back as {col.type}, not an exact NUMBER",
                    column=f.name,
                )
            try:
                cols.append(col.cast(f.type, safe=True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise self.conn.error(
                    f"{query.source}.{f.name} ({col.type}) does not fit {f.type} "
                    f"without loss: {exc}",
                    column=f.name,
                ) from None
        return pa.Table.from_arrays(cols, schema=target)

    def _write(self, query: q.ViewQuery, chunks: Iterator[pa.Table], path: Path) -> Path:
        """Stream the chunks to one Parquet file in row groups of exactly ROW_GROUP rows."""
        path.parent.mkdir(parents=True, exist_ok=True)
        pending: list[pa.Table] = []
        n = 0
        with pq.ParquetWriter(path, q.schema(query.schema_key), compression="snappy") as writer:
            for chunk in chunks:
                pending.append(self._conform(query, chunk))
                n += chunk.num_rows
                if n >= ROW_GROUP:
                    whole = pa.concat_tables(pending)
                    k = n - n % ROW_GROUP
                    writer.write_table(whole.slice(0, k), row_group_size=ROW_GROUP)
                    pending, n = [whole.slice(k)], n - k
            if n:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
        self.rows_pulled += pq.ParquetFile(path).metadata.num_rows
        log.info("%s: pulled %s for %s", self.conn.source_name, query.source, self.period)
        return path

    def _deliver(self, folder: Path, written: list[Path]) -> Delivery:
        rels = sorted(p.relative_to(self.staging).as_posix() for p in written)
        digest = hashlib.sha256()
        for rel in rels:
            digest.update(f"{rel}\0{file_digest(self.staging / rel)}\n".encode())
        manifest = folder / h.MANIFEST
        # A pushdown pull is another delivery than the rows (and lands as another snapshot).
        kind = "grain-sha256:" if self.grain else "sha256:"
        doc = {"period": str(self.period), "version": kind + digest.hexdigest(), "files": rels}
        manifest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        delivery = self.conn._from_manifest(self.staging, self.period, manifest)
        meta = {**delivery.metadata, "account": str(self.s.account)}
        meta["rows_pulled"] = str(self.rows_pulled)
        meta["pull"] = "grain" if self.grain else "lines" if self.sku_keys is not None else "rows"
        return Delivery(files=delivery.files, version=delivery.version, metadata=meta)

    # -- errors ---------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in self.secrets.values():
            text = text.replace(secret, "***")
        return text

    def describe(self, exc: BaseException) -> str:
        """First line of the error; the SDK's text starts with its errno and SQL state."""
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
        if not isinstance(exc, sf.Error):
            text = f"{type(exc).__name__}: {text}"
        return self.scrub(text or type(exc).__name__)

    def on_retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        log.warning(
            "%s: transient error while %s (%s); retry %d in %.1f s",
            self.conn.source_name,
            self.step,
            self.describe(exc),
            attempt,
            delay,
        )


def pull(
    conn: SnowflakeUsageConnector,
    period: Period,
    staging: Path,
    sku_keys: tuple[str, ...] | None = None,
) -> Delivery:
    """Pull ``period`` of the three views into ``staging``; SourceError on failure.

    With ``pushdown`` set: Cortex usage aggregated in Snowflake (``remote_sql``), or, given
    ``sku_keys``, the view rows of those keys only (the lines behind discrepancies)."""
    job = _Pull(conn, period, staging, sku_keys)
    try:
        return with_retries(
            job.attempt,
            transient=is_transient,
            attempts=job.s.attempts,
            base_delay=job.s.retry_base_delay,
            on_retry=job.on_retry,
        )
    except SourceError:
        raise
    except Exception as exc:  # the SDK's errors, named by view; never chained (no secrets)
        kind = "still failing after retries" if is_transient(exc) else "failed"
        raise conn.error(f"{kind} while {job.step}: {job.describe(exc)}") from None
