"""Settings of the Snowflake usage-views connector (local unload form)."""

from __future__ import annotations

from typing import Literal

from connectors.base import ConnectorSettings


class SnowflakeUsageSettings(ConnectorSettings):
    """Where the views were unloaded: ``path`` holds one ``YYYY-MM/`` folder per period.

    A relative ``path`` resolves against the data folder (``REVSHARE_DATA_DIR``).
    """

    type: Literal["snowflake_usage"] = "snowflake_usage"
    path: str
