"""Pull one invoice month of the billing export from BigQuery into a staging folder.

Imported lazily by ``GcpBillingConnector.fetch``, so configs and local reads never load the SDK.

What a pull does, and why:

1. Check the project, dataset and table names against the naming rules and build the quoted
   table reference from them: a bad name fails before any request.
2. Read the table's metadata (one GET): a missing dataset or table fails at once, naming it;
   the metadata gives the schema (written as ``schema.json``) and the partitioning column.
3. Run ``SELECT *`` for ``invoice.month = @invoice_month`` within a partition window (see
   ``query.py``), nested RECORD/REPEATED columns as they are.
4. Stream the result as Arrow record batches to a Parquet spool: through the Storage Read API
   when google-cloud-bigquery-storage is installed and the endpoint is Google's, else REST
   pages. Then ``staging.lay_out`` writes the local extract layout.

Pushdown (``pushdown: true``): step 3 runs ``grain.grain_query`` instead (the month summed in
BigQuery; ``lay_out`` nests its flat rows back into export records), and after reconciling,
``fetch_lines`` runs ``query.lines_query`` (the rows of some SKU keys, as a full pull gives them).

Retries are ours, not the SDK's (its ``retry``/``job_retry`` are switched off), so one bounded
policy covers every call and a permanent error costs one request: transient = connection
errors, timeouts, 5xx, 429 and BigQuery's rateLimitExceeded/backendError reasons.

Credentials: Google's standard chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud ADC, metadata
server); anonymous only for an ``http://`` emulator endpoint. No credential is ever logged.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import bigquery

from connectors.base import Delivery
from connectors.gcp_billing import grain, query, staging
from connectors.gcp_billing.settings import GcpBillingSettings
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.retry import with_retries
from revshare.store import file_digest

if TYPE_CHECKING:
    from connectors.gcp_billing import GcpBillingConnector

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: BigQuery error reasons that mean "try again" even when the HTTP status is 400/403.
_RETRY_REASONS = frozenset(
    {"rateLimitExceeded", "backendError", "internalError", "jobBackendError", "jobInternalError"}
)
_TRANSIENT_TYPES = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    requests.ConnectionError,  # refused, reset, DNS
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # a page cut mid-stream
    auth_exc.TransportError,  # token refresh could not reach the token endpoint
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another try: the network, the service's load, rate limits."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        reasons = {e.get("reason") for e in (exc.errors or []) if isinstance(e, dict)}
        return bool(reasons & _RETRY_REASONS)
    return False


class _Puller:
    """One pull: the connector's settings, its error factory, one client, one staging dir."""

    def __init__(
        self,
        connector: GcpBillingConnector,
        period: Period,
        staging_dir: Path,
        sku_keys: tuple[str, ...] | None = None,
    ) -> None:
        settings = connector.settings
        assert isinstance(settings, GcpBillingSettings) and settings.remote
        assert settings.project is not None and settings.dataset is not None
        self.conn = connector
        self.s = settings
        self.project, self.dataset, self.table = settings.project, settings.dataset, settings.table
        self.period = period
        self.staging = staging_dir
        self.full_id = f"{self.project}.{self.dataset}.{self.table}"
        #: Pushdown: the month summed in BigQuery (``grain``), or afterwards the rows of these
        #: SKU keys only (the lines behind discrepancies).
        self.sku_keys = sku_keys
        self.grain = settings.pushdown and sku_keys is None

    # -- errors and retries ---------------------------------------------------------------

    def error(self, message: str) -> SourceError:
        return self.conn.error(message)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one step with our retry policy; map what is left to a SourceError."""

        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning(
                "%s: %s failed (%s), attempt %d/%d, retrying in %.1f s",
                self.conn.source_name, what, _brief(exc), attempt, self.s.retry_attempts, delay,
            )  # fmt: skip

        try:
            return with_retries(
                fn,
                transient=is_transient,
                attempts=self.s.retry_attempts,
                base_delay=self.s.retry_base_delay,
                on_retry=on_retry,
            )
        except SourceError:
            raise
        except Exception as exc:
            raise self._mapped(what, exc) from exc

    def _mapped(self, what: str, exc: Exception) -> SourceError:
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            # The SDK's text names the key file; say what to fix without repeating it.
            return self.error(
                "no usable Google credentials: GOOGLE_APPLICATION_CREDENTIALS must name a "
                "readable key file, or run `gcloud auth application-default login`"
            )
        if isinstance(exc, auth_exc.RefreshError | gexc.Unauthorized):
            return self.error(f"Google credentials were rejected while {what}")
        if isinstance(exc, gexc.Forbidden) and not is_transient(exc):
            return self.error(
                f"access denied while {what} (needs BigQuery Data Viewer on the dataset and "
                f"Job User on project {self.s.job_project or self.project}): {_brief(exc)}"
            )
        if isinstance(exc, concurrent.futures.TimeoutError):
            return self.error(f"timed out after {self.s.query_timeout_seconds:g} s while {what}")
        if is_transient(exc):
            return self.error(
                f"BigQuery unavailable while {what}, gave up after {self.s.retry_attempts} "
                f"attempts: {_brief(exc)}"
            )
        if isinstance(exc, gexc.GoogleAPICallError):
            return self.error(f"BigQuery refused {what}: {_brief(exc)}")
        return self.error(f"failed while {what}: {_brief(exc)}")

    # -- the pull -------------------------------------------------------------------------

    def run(self) -> Delivery:
        try:
            ref = query.table_ref(self.project, self.dataset, self.table)
        except query.BadName as exc:  # settings were built without validation
            raise self.error(str(exc)) from exc
        creds = self.call("finding Google credentials", self._credentials)
        client = self._client(creds)
        table = self._table(client)
        part = self._partitioning(table)
        q = self._query(ref, part)
        job = self.call(f"querying {self.full_id}", lambda: self._run_query(client, q))
        read_client = self._read_client(creds)
        spool = staging.spool_path(self.staging)
        rows = self.call(
            f"downloading the result of job {job.job_id}",
            lambda: staging.spool(self._batches(job, read_client), spool),
        )
        if rows == 0:  # as the local form fails on a month without export files
            raise self.error(f"no rows for invoice month {self.period.compact} in {self.full_id}")
        fields = [f.to_api_repr() for f in table.schema]
        if self.grain:
            staged = staging.lay_out(
                self.staging, self.table, self.period, grain.grain_schema(fields), grain.nest_sql
            )
        else:
            staged = staging.lay_out(self.staging, self.table, self.period, fields)
        log.info(
            "%s: pulled %d rows of %s for %s (%s bytes processed)",
            self.conn.source_name, staged.rows, self.full_id, self.period.compact,
            job.total_bytes_processed,
        )  # fmt: skip
        # Month-scoped on purpose: the table is appended all day for the open month, so its
        # last-modified time changes while a closed month's rows do not.
        version = (
            f"bigquery:{self.full_id}:{self.period.compact}:rows={staged.rows}"
            f":last_export={staged.last_export_time}"
        )
        if self.grain or self.sku_keys is not None:
            # Sums, or a subset of rows: another delivery than the month's rows, so another
            # snapshot, named by its content (the sorted layout makes the bytes depend on the
            # rows only).
            digest = hashlib.sha256()
            for f in staged.files:
                digest.update(f"{f.relpath}\0{file_digest(f.path)}\n".encode())
            version = ("grain-sha256:" if self.grain else "lines-sha256:") + digest.hexdigest()
        return Delivery(
            files=staged.files,
            version=version,
            metadata={
                "table": self.full_id,
                "invoice_month": self.period.compact,
                "rows": str(staged.rows),
                "last_export_time": str(staged.last_export_time),
                "table_modified": str(table.modified),
                "table_rows": str(table.num_rows),
                "partition_filter": part.column or "none",
                "job_id": job.job_id,
                "bytes_processed": str(job.total_bytes_processed),
                "read_api": "storage" if read_client is not None else "rest",
                "pull": "grain" if self.grain else "lines" if self.sku_keys is not None else "rows",
                "rows_pulled": str(rows),
            },
        )

    def _query(self, ref: str, part: query.Partitioning) -> query.ExportQuery:
        slack = self.s.partition_slack_days
        if self.sku_keys is not None:
            return query.lines_query(ref, self.period, part, slack, self.sku_keys)
        if self.grain:
            where, params = query.month_filter(self.period, part, slack)
            return grain.grain_query(ref, where, params)
        return query.export_query(ref, self.period, part, slack)

    def _credentials(self) -> Credentials:
        if self.s.emulator:
            return AnonymousCredentials()
        creds, _ = google.auth.default(scopes=_SCOPES)
        return creds

    def _client(self, creds: Credentials) -> bigquery.Client:
        options = ClientOptions(api_endpoint=self.s.api_endpoint) if self.s.api_endpoint else None
        return bigquery.Client(
            project=self.s.job_project or self.project,
            credentials=creds,
            location=self.s.location,
            client_options=options,
        )

    def _table(self, client: bigquery.Client) -> bigquery.Table:
        ds_ref = bigquery.DatasetReference(self.project, self.dataset)
        t_ref = ds_ref.table(self.table)
        timeout = self.s.timeout_seconds
        try:
            return self.call(
                f"reading table {self.full_id}",
                lambda: client.get_table(t_ref, retry=None, timeout=timeout),
            )
        except SourceError as err:
            if not isinstance(err.__cause__, gexc.NotFound):
                raise
        # Say which is missing: the dataset, or the table in it.
        try:
            self.call(
                f"reading dataset {self.project}.{self.dataset}",
                lambda: client.get_dataset(ds_ref, retry=None, timeout=timeout),
            )
        except SourceError as err:
            if isinstance(err.__cause__, gexc.NotFound):
                raise self.error(f"dataset {self.project}.{self.dataset} not found") from None
            raise
        raise self.error(f"table {self.full_id} not found")

    def _partitioning(self, table: bigquery.Table) -> query.Partitioning:
        tp = table.time_partitioning
        field = tp.field if tp is not None else None
        types = {f.name: f.field_type for f in table.schema}
        try:
            return query.partitioning(field, tp is not None, types.get(field) if field else None)
        except query.BadName as exc:
            raise self.error(f"{self.full_id}: {exc}") from exc

    def _run_query(self, client: bigquery.Client, q: query.ExportQuery) -> Any:
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(p.name, p.type, p.value) for p in q.params
            ],
            maximum_bytes_billed=self.s.maximum_bytes_billed,
        )
        # A fresh job id per attempt: a job that failed on a backend error must be re-run,
        # not re-read.
        job = client.query(
            q.sql,
            job_config=config,
            job_id=f"revshare_{self.period.compact}_{uuid.uuid4().hex}",
            location=self.s.location,
            project=self.s.job_project or self.project,
            retry=None,
            job_retry=None,
            timeout=self.s.timeout_seconds,
        )
        job.result(max_results=0, retry=None, job_retry=None, timeout=self.s.query_timeout_seconds)
        return job

    def _read_client(self, creds: Credentials) -> Any:
        """A Storage Read API client when it can be used, else None (REST pages)."""
        if self.s.read_api == "rest" or self.s.api_endpoint is not None:
            return None
        try:
            from google.cloud import bigquery_storage
        except ImportError:
            log.info("%s: google-cloud-bigquery-storage not installed; reading over REST",
                     self.conn.source_name)  # fmt: skip
            return None
        return bigquery_storage.BigQueryReadClient(credentials=creds)

    def _batches(self, job: Any, read_client: Any) -> Any:
        rows = job.result(retry=None, job_retry=None, timeout=self.s.query_timeout_seconds)
        return rows.to_arrow_iterable(bqstorage_client=read_client)


def pull(
    connector: GcpBillingConnector,
    period: Period,
    staging_dir: Path,
    sku_keys: tuple[str, ...] | None = None,
) -> Delivery:
    """Query ``period``'s invoice month and stage it in the local extract layout.

    With ``pushdown`` set: summed in BigQuery (``grain``), or, given ``sku_keys``, the rows of
    those keys only (the lines behind discrepancies)."""
    return _Puller(connector, period, staging_dir, sku_keys).run()


def _brief(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {str(text).strip().splitlines()[0][:300]}"
