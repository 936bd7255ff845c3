"""Settings of the Google Cloud billing export connector (``type: gcp_billing``).

Two modes, chosen by ``project`` + ``dataset``:

- local (neither set): ``path`` is a folder holding ``<table>/schema.json`` and
  ``<table>/invoice_month=YYYYMM/*.json.gz`` (what ``bq show --schema`` and an extract job give);
- BigQuery (both set): the invoice month is queried from ``project.dataset.table`` and staged
  in that same layout, so both modes share one normalization. ``path`` is not used.

No secret is ever held here: credentials come from Google's standard chain
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud ADC, the metadata server). Only an emulator endpoint
(``http://``) is called without credentials.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from connectors.base import ConnectorSettings

#: Dataset names, and the subset of table names we accept: letters, digits, underscores.
#: BigQuery also allows dashes and spaces in table names; billing exports never use them, and
#: refusing them keeps every name safe inside a backtick-quoted reference without escaping.
BQ_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
#: Google Cloud project ids: 6-30 chars, lowercase letters, digits, hyphens, letter first.
#: (Legacy domain-scoped ids, ``example.com:proj``, are not accepted.)
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
#: BigQuery locations: multi-regions (US, EU) and regions (europe-west4).
LOCATION = re.compile(r"^[A-Za-z]{2,}(?:-[a-z]+[0-9]+)?$")


class GcpBillingSettings(ConnectorSettings):
    """Where the export is: a folder (local) or a BigQuery table (``project`` + ``dataset``)."""

    type: Literal["gcp_billing"]
    #: Local mode: folder holding ``<table>/`` (relative paths resolve against the data folder).
    path: str | None = None
    #: The export table, e.g. ``gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C``.
    table: str
    #: BigQuery mode: the project and dataset holding ``table``.
    project: str | None = None
    dataset: str | None = None
    #: The project that runs (and pays for) the query; defaults to ``project``.
    job_project: str | None = None
    #: The dataset's location (US, EU, europe-west4...); BigQuery infers it when omitted.
    location: str | None = None
    #: REST endpoint of an emulator (``http://127.0.0.1:9050``) or a private Google endpoint
    #: (``https://...``). Only an ``http://`` endpoint is called without credentials.
    api_endpoint: str | None = None
    #: Days scanned before and after the month, on the table's partitioning column. Rows of an
    #: invoice month carry usage from its last days before (late reports, the US/Pacific month
    #: boundary) and arrive after it ends (corrections up to the invoice close). The exact
    #: filter is ``invoice.month``; the window only prunes partitions.
    partition_slack_days: int = Field(default=10, ge=0, le=62)
    #: "auto": the Storage Read API when google-cloud-bigquery-storage is installed and the
    #: endpoint is Google's; "rest": always page through the REST API.
    read_api: Literal["auto", "rest"] = "auto"
    #: Refuse to run a query that would bill more bytes than this (a guard against a missing
    #: partition filter on a huge table). None: no cap.
    maximum_bytes_billed: int | None = Field(default=None, ge=1)
    #: Seconds per HTTP request, and for the query job to finish.
    timeout_seconds: float = Field(default=120, gt=0, le=3600)
    query_timeout_seconds: float = Field(default=900, gt=0, le=86400)
    #: Calls per step when BigQuery answers with a transient error (5xx, 429, rate limits).
    retry_attempts: int = Field(default=5, ge=1, le=20)
    #: First backoff delay in seconds; doubles per attempt (capped at 8 s), with jitter.
    retry_base_delay: float = Field(default=0.5, ge=0, le=60)
    #: BigQuery mode only. Sum the month in BigQuery per UTC day and every field the
    #: normalization reads, pull that, then after reconciliation pull the rows behind the
    #: discrepancies only (``grain.py``, docs/scaling.md). Figures equal the full pull's (on
    #: BigQuery's FLOAT64 text, see ``grain.py``); the hour and labels of a line that matched
    #: are not pulled.
    pushdown: bool = False

    @property
    def remote(self) -> bool:
        """BigQuery mode: the settings name the table's project and dataset."""
        return self.project is not None and self.dataset is not None

    @property
    def emulator(self) -> bool:
        """An ``http://`` endpoint is a local emulator: no credentials, no Storage Read API."""
        return self.api_endpoint is not None and self.api_endpoint.startswith("http://")

    @field_validator("table", "dataset")
    @classmethod
    def _bq_name(cls, value: str | None) -> str | None:
        # Names go into file paths here and into a quoted table reference in BigQuery: refuse
        # anything outside the safe subset rather than escape it.
        if value is not None and not BQ_NAME.match(value):
            raise ValueError(f"not a BigQuery table/dataset name (A-Z, a-z, 0-9, _): {value!r}")
        return value

    @field_validator("project", "job_project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        if value is not None and not PROJECT_ID.match(value):
            raise ValueError(f"not a Google Cloud project id: {value!r}")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None and not LOCATION.match(value):
            raise ValueError(f"not a BigQuery location: {value!r}")
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_endpoint must be an http(s) URL, got {value!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("api_endpoint must not carry credentials, a query or a fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mode(self) -> GcpBillingSettings:
        if (self.project is None) != (self.dataset is None):
            raise ValueError("BigQuery mode needs both project and dataset (or neither)")
        if not self.remote and self.path is None:
            raise ValueError("local mode needs path (or set project and dataset for BigQuery)")
        if not self.remote and self.pushdown:
            raise ValueError(
                "pushdown needs BigQuery (project and dataset): a local extract has no warehouse"
            )
        return self
