"""Settings of the Azure Cost Management exports connector (``type: azure_cost``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.base import ConnectorSettings

# Azure export names: letters, digits, '-' and '_' (the portal refuses anything else). Checked
# here because the name becomes a folder we look into.
_EXPORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class AzureCostSettings(ConnectorSettings):
    """Where the export's container/root folder sits locally and which export to read."""

    type: Literal["azure_cost"]
    #: CONTAINER/ROOT as exported (holds ``<export_name>/<YYYYMMDD-YYYYMMDD>/...``); relative
    #: paths resolve against the data folder.
    path: str
    #: The export's name, the first folder under ``path``.
    export_name: str

    @field_validator("export_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _EXPORT.match(v):
            raise ValueError(f"export_name must be a plain Azure export name, got {v!r}")
        return v
