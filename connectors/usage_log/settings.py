"""Settings of the usage-log connector (``type: usage_log`` in config/partners.yaml)."""

from __future__ import annotations

from typing import Literal

from connectors.base import ConnectorSettings


class UsageLogSettings(ConnectorSettings):
    type: Literal["usage_log"]
    #: Folder holding one sub-folder per period (YYYY-MM) of usage-log files (.csv, .jsonl).
    path: str
    #: Currency of ``cost`` when a log has no ``currency`` column.
    currency: str = "USD"
