"""Settings of the generic FOCUS connector (``type: focus`` in config/partners.yaml)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.base import ConnectorSettings

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FocusSettings(ConnectorSettings):
    """Where the FOCUS files sit and which column carries the catalog's native key."""

    type: Literal["focus"]
    #: Folder holding the FOCUS files; relative paths resolve against the data folder.
    path: str
    #: Which files under ``path`` to read; only .csv, .csv.gz and .parquet matches are kept.
    glob: str = "**/*"
    #: Column whose value becomes x_SkuKey. SkuId is FOCUS's own; providers' x_ columns (e.g.
    #: Azure's x_SkuMeterName) work too. Null values fall back to ChargeDescription.
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
