"""Settings of the Snowflake usage-views connector: a local unload folder, or a live account.

Remote mode is chosen by giving ``account``: ``fetch`` then queries the three views and
writes them into staging in the local layout. Without ``account`` the connector reads the
unload folder ``path`` as before. Secrets are never settings: ``password_env`` and
``private_key_path_env`` name the environment variables that hold them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.base import ConnectorSettings
from connectors.settings_common import EnvName

#: Snowflake's unquoted identifier rule (letters, digits, _ and $; not starting with a digit
#: or $). Quoted identifiers could hold anything, so we accept only this form.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")
#: Environment variable names (POSIX portable form).

DEFAULT_USAGE_VIEW = "SNOWFLAKE.ORGANIZATION_USAGE.USAGE_IN_CURRENCY_DAILY"
DEFAULT_RATE_VIEW = "SNOWFLAKE.ORGANIZATION_USAGE.RATE_SHEET_DAILY"
DEFAULT_CORTEX_VIEW = "SNOWFLAKE.ACCOUNT_USAGE.CORTEX_FUNCTIONS_USAGE_HISTORY"


def view_parts(name: str) -> tuple[str, str, str]:
    """``database.schema.view`` -> three upper-cased unquoted identifiers.

    Upper-casing is what Snowflake does to unquoted names, so the quoted form we send
    resolves to the same object a user's unquoted name would.
    """
    parts = name.split(".")
    if len(parts) != 3 or not all(IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"view must be database.schema.view of plain identifiers, got {name!r}")
    db, schema, view = (p.upper() for p in parts)
    return db, schema, view


class SnowflakeUsageSettings(ConnectorSettings):
    """Where the views come from.

    Local: ``path`` holds one ``YYYY-MM/`` folder per period (relative paths resolve against
    the data folder, ``REVSHARE_DATA_DIR``). Remote: ``account`` (+ ``user`` and one of
    ``password_env`` / ``private_key_path_env``) selects a live pull, see README.md.
    """

    type: Literal["snowflake_usage"] = "snowflake_usage"
    path: str | None = None

    # -- remote mode ----------------------------------------------------------------------
    account: str | None = None  # account identifier, e.g. "myorg-myaccount"
    user: str | None = None
    password_env: EnvName | None = None  # name of the env var holding the password
    private_key_path_env: EnvName | None = None  # env var holding the path of a PEM key (JWT)
    private_key_passphrase_env: EnvName | None = None  # env var holding the key's passphrase
    role: str | None = None
    warehouse: str | None = None
    # Endpoint overrides, for the fakesnow emulator or a private link host.
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["https", "http"] = "https"

    usage_view: str = DEFAULT_USAGE_VIEW
    rate_view: str = DEFAULT_RATE_VIEW
    cortex_view: str = DEFAULT_CORTEX_VIEW
    #: The Cortex view names no account; by default the query adds CURRENT_ACCOUNT() and
    #: CURRENT_REGION(). Set both to pin them (e.g. a region group prefix to strip).
    account_locator: str | None = None
    region: str | None = None

    #: Remote only. Sum Cortex usage per (UTC day, function, model) in Snowflake and pull
    #: that, then after reconciliation pull the rows behind the discrepancies only
    #: (docs/scaling.md). Figures equal the full pull; the hour and warehouse of a line that
    #: matched are not pulled.
    pushdown: bool = False

    login_timeout: int = Field(default=60, ge=1)  # seconds the SDK keeps retrying a login
    network_timeout: int = Field(default=300, ge=1)  # ... a query request
    attempts: int = Field(default=4, ge=1, le=10)  # our retries around a whole pull
    retry_base_delay: float = Field(default=2.0, ge=0)

    @property
    def remote(self) -> bool:
        return self.account is not None

    @field_validator("usage_view", "rate_view", "cortex_view")
    @classmethod
    def _view(cls, v: str) -> str:
        return ".".join(view_parts(v))

    @field_validator("role", "warehouse")
    @classmethod
    def _ident(cls, v: str | None) -> str | None:
        if v is not None and not IDENTIFIER.match(v):
            raise ValueError(f"not a plain Snowflake identifier: {v!r}")
        return v

    @model_validator(mode="after")
    def _mode(self) -> SnowflakeUsageSettings:
        if self.account is None:
            if self.path is None:
                raise ValueError("give `path` (local unload) or `account` (remote)")
            if self.pushdown:
                raise ValueError("pushdown needs a live account: a local unload has no warehouse")
            return self
        if not self.user:
            raise ValueError("remote mode needs `user`")
        if (self.password_env is None) == (self.private_key_path_env is None):
            raise ValueError("remote mode needs exactly one of password_env, private_key_path_env")
        if (self.account_locator is None) != (self.region is None):
            raise ValueError("set both account_locator and region, or neither")
        return self
