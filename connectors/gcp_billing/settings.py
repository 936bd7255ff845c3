"""Settings of the Google Cloud billing export connector (local-file form)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.base import ConnectorSettings

#: BigQuery's rule for table (and dataset) names: letters, digits and underscores.
BQ_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: Google Cloud project ids: 6-30 chars, lowercase letters, digits, hyphens, letter first.
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


class GcpBillingSettings(ConnectorSettings):
    """Where the extracted export sits.

    ``path`` holds ``<table>/schema.json`` and ``<table>/invoice_month=YYYYMM/*.json.gz``.
    ``project`` and ``dataset`` name the BigQuery table for the warehouse version of this
    connector; the local form does not use them, but validates them so a config written for
    one works for the other.
    """

    type: Literal["gcp_billing"]
    path: str
    table: str
    project: str | None = None
    dataset: str | None = None

    @field_validator("table", "dataset")
    @classmethod
    def _bq_name(cls, value: str | None) -> str | None:
        # Names go into file globs here and into SQL identifiers in BigQuery: refuse anything
        # BigQuery itself would refuse rather than quote it.
        if value is not None and (not BQ_NAME.match(value) or len(value) > 1024):
            raise ValueError(f"not a BigQuery table/dataset name (A-Z, a-z, 0-9, _): {value!r}")
        return value

    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        if value is not None and not PROJECT_ID.match(value):
            raise ValueError(f"not a Google Cloud project id: {value!r}")
        return value
