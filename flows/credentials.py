"""Cloud credentials from Prefect blocks, for users who keep them in Prefect.

A source may name a block instead of environment variables:
``credentials_block: aws-credentials/revshare-reader`` (block type slug / block name). For the
duration of that source's extraction the block's secrets are exposed the way the connector
already reads credentials (the SDK's standard environment variables, or the env var names its
settings declare), then removed again. Secrets never enter settings objects, logs or files,
except a GCP service-account key, which is written to a private temporary file (mode 0600)
that is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from revshare.config import SourceConfig
from revshare.errors import SourceError

BLOCK_KEY = "credentials_block"
#: Env var names the flow fills from a block when the settings name none.
SNOWFLAKE_PASSWORD_ENV = "REVSHARE_BLOCK_SNOWFLAKE_PASSWORD"
AZURE_CONNECTION_ENV = "REVSHARE_BLOCK_AZURE_CONNECTION_STRING"


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _load(ref: str, source_name: str) -> Any:
    # Importing the collections registers their block types with Prefect.
    import prefect_aws  # noqa: F401
    import prefect_azure  # noqa: F401
    import prefect_gcp  # noqa: F401
    import prefect_snowflake  # noqa: F401
    from prefect.blocks.core import Block

    try:
        return Block.load(ref)
    except (ValueError, KeyError) as exc:
        raise SourceError(
            source_name, f"cannot load credentials block {ref!r}: {type(exc).__name__}"
        ) from None


def _resolve(block: Any, settings: dict[str, Any], tmp: Path) -> tuple[dict, dict[str, str]]:
    """(extra settings, environment) that hand ``block``'s credentials to the connector."""
    slug = block.get_block_type_slug()
    extra: dict[str, Any] = {}
    env: dict[str, str] = {}
    if slug == "aws-credentials":
        pairs = {
            "AWS_ACCESS_KEY_ID": block.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": _secret(block.aws_secret_access_key),
            "AWS_SESSION_TOKEN": _secret(block.aws_session_token),
        }
        env.update({k: v for k, v in pairs.items() if v})
        if block.profile_name and "profile" not in settings:
            extra["profile"] = block.profile_name
        if block.region_name and "region" not in settings:
            extra["region"] = block.region_name
    elif slug == "gcp-credentials":
        info = block.service_account_info
        if info is not None:
            key = tmp / "service-account.json"
            key.touch(mode=0o600)
            key.write_text(json.dumps(info.get_secret_value()))
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key)
        elif block.service_account_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(block.service_account_file)
    elif slug == "azure-blob-storage-credentials":
        conn = _secret(block.connection_string)
        if conn:
            name = settings.get("connection_string_env", AZURE_CONNECTION_ENV)
            extra["connection_string_env"] = name
            env[name] = conn
    elif slug == "snowflake-credentials":
        for field in ("account", "user", "role"):
            if getattr(block, field, None) and field not in settings:
                extra[field] = getattr(block, field)
        password = _secret(block.password)
        if password:
            name = settings.get("password_env", SNOWFLAKE_PASSWORD_ENV)
            extra["password_env"] = name
            env[name] = password
    else:
        raise ValueError(f"unsupported credentials block type {slug!r}")
    return extra, env


@contextmanager
def block_credentials(source: SourceConfig, source_name: str) -> Iterator[SourceConfig]:
    """Yield the source's settings without ``credentials_block``, with its block's credentials
    exposed to the connector until the block exits."""
    settings = source.connector_settings()
    ref = settings.pop(BLOCK_KEY, None)
    if ref is None:
        yield source
        return
    block = _load(str(ref), source_name)
    with tempfile.TemporaryDirectory(prefix="revshare-creds-") as tmp:
        try:
            extra, env = _resolve(block, settings, Path(tmp))
        except ValueError as exc:
            raise SourceError(source_name, str(exc)) from None
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield SourceConfig(type=source.type, **settings, **extra)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
