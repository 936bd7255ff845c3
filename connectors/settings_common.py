"""Field rules that several connectors' settings share, written once.

Secrets never sit in YAML: a settings field names the *environment variable* that holds one
(``EnvName``), and an Azure Blob endpoint (``AccountUrl``) must not smuggle a SAS token or user
info into the URL. A failing value is never echoed in the message: it may be a secret pasted
into the wrong field.

Use them as field types, e.g. ``connection_string_env: EnvName | None = None``.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_name(v: str) -> str:
    """``v`` if it is a plain environment variable name (not, say, the secret itself)."""
    if not _ENV_NAME.match(v):
        raise ValueError("expected the NAME of an environment variable")
    return v


def account_url(v: str) -> str:
    """An Azure Blob endpoint (``https://ACCOUNT.blob.core.windows.net``) without a trailing
    '/'; a query, fragment or user info is refused, since a SAS pasted there would be a secret
    in YAML."""
    u = urlsplit(v)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError("account_url must be an http(s) URL")
    if u.query or u.fragment or "@" in u.netloc:
        raise ValueError(
            "account_url must not carry a query, fragment or user info (a SAS token): put the "
            "SAS token in the variable named by sas_token_env"
        )
    return v.rstrip("/")


#: The name of an environment variable holding a secret.
EnvName = Annotated[str, AfterValidator(env_name)]
#: An Azure Blob endpoint URL, normalized without a trailing '/'.
AccountUrl = Annotated[str, AfterValidator(account_url)]
