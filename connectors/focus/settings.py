"""Settings of the generic FOCUS connector (``type: focus`` in config/partners.yaml).

Three modes, chosen by ``path`` and ``export_name``:

- plain folder (no ``export_name``): every FOCUS data file under ``path``;
- AWS Data Exports layout on disk (``export_name`` set, local ``path``): the files the period's
  manifest lists, as AWS delivers a "FOCUS 1.2 with AWS columns" export;
- the same export pulled from S3 (``path: s3://bucket/prefix`` and ``export_name``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from connectors.aws_cur2.s3config import S3Options
from connectors.aws_cur2.settings import check_export_name
from connectors.base import ConnectorSettings

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FocusSettings(ConnectorSettings, S3Options):
    """Where the FOCUS files sit and which column carries the catalog's native key."""

    type: Literal["focus"]
    #: Folder holding the FOCUS files (relative paths resolve against the data folder), or
    #: ``s3://BUCKET/PREFIX``, the S3 destination of an AWS Data Exports FOCUS export.
    path: str
    #: Which files under ``path`` to read in plain-folder mode; only .csv, .csv.gz and
    #: .parquet matches are kept. Unused when ``export_name`` is set (the manifest decides).
    glob: str = "**/*"
    #: Name of the AWS Data Exports export: read ``EXPORT/metadata/BILLING_PERIOD=YYYY-MM/
    #: EXPORT-Manifest.json`` and exactly the files it lists. Required with an s3:// path.
    export_name: str | None = None
    #: Column whose value becomes x_SkuKey. SkuId is FOCUS's own; providers' x_ columns (e.g.
    #: Azure's x_SkuMeterName, AWS's x_UsageType) work too. Nulls fall back to ChargeDescription.
    sku_key_column: str = "SkuId"
    #: Keep only rows whose ProviderName (1.3: ServiceProviderName) equals this value, for
    #: datasets that mix several providers (the FinOps Foundation sample does).
    provider_name: str | None = None

    @field_validator("sku_key_column")
    @classmethod
    def _plain_column(cls, v: str) -> str:
        # The name is quoted into SQL; plain names only, so config cannot inject.
        if not _COLUMN.match(v):
            raise ValueError(f"sku_key_column must be a plain column name, got {v!r}")
        return v

    @field_validator("export_name")
    @classmethod
    def _export(cls, v: str | None) -> str | None:
        return None if v is None else check_export_name(v)

    @model_validator(mode="after")
    def _modes(self) -> FocusSettings:
        if self.remote is not None and self.export_name is None:
            raise ValueError(
                "an s3:// path needs export_name: the export's manifest says which files to read"
            )
        return self
