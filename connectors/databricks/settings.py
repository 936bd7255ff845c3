"""Settings of the Databricks connector (``type: databricks`` in config/partners.yaml)."""

from __future__ import annotations

from typing import Literal

from connectors.base import ConnectorSettings


class DatabricksSettings(ConnectorSettings):
    """Where the unloaded system tables sit, and which list price prices the usage."""

    type: Literal["databricks"]
    #: Folder holding one sub-folder per period, ``YYYY-MM/usage/*.parquet`` (rows of
    #: ``system.billing.usage`` whose usage_date falls in the month) and
    #: ``YYYY-MM/list_prices/*.parquet`` (``system.billing.list_prices``, whole table).
    path: str
    #: ``effective_list`` (list price after promotions, Databricks' own cost dashboards use
    #: it; falls back to ``default`` where null) or ``default`` (published list price).
    price: Literal["effective_list", "default"] = "effective_list"
