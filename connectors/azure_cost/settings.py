"""Settings of the Azure Cost Management exports connector (``type: azure_cost``).

Two modes, chosen by ``container``:

- local (no ``container``): ``path`` is a folder on disk holding a copy of CONTAINER/ROOT;
- remote (``container`` set): the export is pulled from Blob Storage; ``path`` is then the
  export's root folder *inside* the container ("" for the container's top), and exactly one
  credential source is named: ``connection_string_env`` or ``account_url`` + ``sas_token_env``.

Secrets never sit in YAML: the fields name environment variables that hold them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.base import ConnectorSettings
from connectors.settings_common import AccountUrl, EnvName

# Azure export names: letters, digits, '-' and '_' (the portal refuses anything else). Checked
# here because the name becomes a folder we look into.
_EXPORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Azure container names: 3-63 characters, lowercase letters, digits and single hyphens, starting
# and ending with a letter or digit (learn.microsoft.com, "Naming and referencing containers").
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_REMOTE_FIELDS = ("connection_string_env", "account_url", "sas_token_env")


class AzureCostSettings(ConnectorSettings):
    """Where the export's root folder is (on disk or in a container) and which export to read."""

    type: Literal["azure_cost"]
    #: Local mode: CONTAINER/ROOT on disk (relative paths resolve against the data folder).
    #: Remote mode: the root folder inside the container ("" = the container's top).
    path: str
    #: The export's name, the first folder under ``path``.
    export_name: str
    #: Remote mode: the Blob Storage container the export writes to.
    container: str | None = None
    #: Name of the environment variable holding a storage connection string.
    connection_string_env: EnvName | None = None
    #: Blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net (used with ``sas_token_env``).
    account_url: AccountUrl | None = None
    #: Name of the environment variable holding a SAS token (read + list on the container).
    sas_token_env: EnvName | None = None
    #: Calls per request when the service answers with a transient error (5xx, 429, timeouts).
    retry_attempts: int = Field(default=5, ge=1, le=20)
    #: First backoff delay in seconds; doubles per attempt (capped at 8 s), with jitter.
    retry_base_delay: float = Field(default=0.5, ge=0, le=60)

    @property
    def remote(self) -> bool:
        return self.container is not None

    @property
    def blob_root(self) -> str:
        """The root folder inside the container as a blob-name prefix ("" or "a/b/")."""
        root = self.path.strip("/")
        return f"{root}/" if root else ""

    @field_validator("export_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _EXPORT.match(v):
            raise ValueError(f"export_name must be a plain Azure export name, got {v!r}")
        return v

    @field_validator("container")
    @classmethod
    def _container_name(cls, v: str | None) -> str | None:
        if v is not None and not _CONTAINER.match(v):
            raise ValueError(
                f"container {v!r} is not a valid Azure container name (3-63 lowercase letters, "
                "digits and single hyphens, starting and ending with a letter or digit)"
            )
        return v

    @model_validator(mode="after")
    def _mode(self) -> AzureCostSettings:
        if self.container is None:
            given = [f for f in _REMOTE_FIELDS if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} need(s) container (remote mode)")
            return self
        if (self.connection_string_env is None) == (self.account_url is None):
            raise ValueError(
                "remote mode needs exactly one credential source: "
                "connection_string_env, or account_url with sas_token_env"
            )
        if (self.account_url is None) != (self.sas_token_env is None):
            raise ValueError("account_url and sas_token_env go together")
        root = self.path.strip("/")
        parts = root.split("/") if root else []
        if "\\" in root or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"path {self.path!r} must be a plain folder inside the container")
        return self
