"""Connector registry: one explicit, typed mapping from a source ``type`` to its connector.

Adding a partner on a known format is a config entry; adding a format is a folder here and a
line in ``REGISTRY``. Flows look connectors up by type and branch on their capabilities.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from connectors.aws_cur2 import AwsCur2Connector
from connectors.azure_cost import AzureCostConnector
from connectors.base import Connector, SourceError
from connectors.focus import FocusConnector
from connectors.gcp_billing import GcpBillingConnector
from connectors.snowflake_usage import SnowflakeUsageConnector
from connectors.statement_files import StatementFilesConnector
from revshare.config import SourceConfig

REGISTRY: dict[str, type[Connector]] = {
    c.type: c
    for c in (
        AwsCur2Connector,
        GcpBillingConnector,
        AzureCostConnector,
        SnowflakeUsageConnector,
        FocusConnector,
        StatementFilesConnector,
    )
}


def build_connector(source: SourceConfig, data_dir: Path, source_name: str) -> Connector:
    """Validate a source's settings with its connector's model and build the connector."""
    cls = REGISTRY.get(source.type)
    if cls is None:
        known = ", ".join(sorted(REGISTRY))
        raise SourceError(source_name, f"unknown source type {source.type!r}; known: {known}")
    try:
        settings = cls.settings_model(type=source.type, **source.connector_settings())
    except ValidationError as exc:
        raise SourceError(
            source_name,
            f"bad settings: {exc.errors()[0]['msg']} "
            f"({'.'.join(map(str, exc.errors()[0]['loc']))})",
        ) from None
    return cls(settings, data_dir, source_name)
