"""Settings of the statement connector (``type: statement_files``): a local folder, or a bucket,
container or SFTP drop laid out the same way (``<prefix>/<YYYY-MM>/<files>``).

``path`` selects the mode. A local folder is read in place (``locate``); a URI is pulled into
staging (``fetch``): ``s3://BUCKET/PREFIX``, ``gs://BUCKET/PREFIX``, ``az://CONTAINER/PREFIX``
or ``sftp://USER@HOST[:PORT]/ABSOLUTE/PATH``. No SDK is imported here: settings are parsed on
every config load, and only a pull needs one.

Secrets never sit in YAML. S3 takes boto3's standard chain (environment, profile, role); GCS
takes Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``); Azure and SFTP
settings name the *environment variables* that hold the connection string, SAS token,
password, private key or passphrase. A value that fails validation is never echoed
(``hide_input_in_errors``): it may be a secret pasted into the wrong field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from connectors.aws_cur2.s3config import S3Options, parse_s3_uri
from connectors.base import ConnectorSettings
from connectors.settings_common import AccountUrl, EnvName

SCHEMES = ("s3", "gs", "az", "sftp")
# GCS bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting
# and ending with a letter or digit (dotted names up to 222 are rare; not accepted here).
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
# Azure container names: 3-63 lowercase letters, digits and single hyphens.
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
# Printable, no backslash: a prefix becomes both a remote key prefix and a local path.
_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f\\]+$")

_S3_FIELDS = ("endpoint_url", "region", "profile")
_GCS_FIELDS = ("project",)
_AZ_FIELDS = ("connection_string_env", "account_url", "sas_token_env")
_SFTP_FIELDS = ("known_hosts", "private_key_env", "private_key_path", "passphrase_env",
                "password_env")  # fmt: skip
_FIELDS = {"s3": _S3_FIELDS, "gs": _GCS_FIELDS, "az": _AZ_FIELDS, "sftp": _SFTP_FIELDS}


@dataclass(frozen=True)
class RemoteLocation:
    """Where a remote statement folder is; printable (it never holds a secret)."""

    scheme: Literal["s3", "gs", "az", "sftp"]
    #: Bucket (s3, gs), container (az) or host (sftp).
    container: str
    #: Key prefix without leading or trailing '/' ('' = the top). SFTP: an absolute path.
    prefix: str
    port: int = 22
    user: str | None = None

    def folder(self, period: object) -> str:
        """The period's folder as the store names it: a key prefix ending in '/' (object
        stores) or an absolute directory path (SFTP)."""
        if self.scheme == "sftp":
            return "/" + "/".join(p for p in (self.prefix, str(period)) if p)
        return "/".join(p for p in (self.prefix, str(period)) if p) + "/"

    def uri(self, rel: str = "") -> str:
        if self.scheme == "sftp":
            who = f"{self.user}@" if self.user else ""
            base = f"sftp://{who}{self.container}:{self.port}/{self.prefix}"
        else:
            base = f"{self.scheme}://{self.container}/{self.prefix}"
        return "/".join(p for p in (base.rstrip("/"), rel) if p)


def _prefix(text: str, what: str) -> str:
    prefix = text.strip("/")
    if prefix:
        for seg in prefix.split("/"):
            if seg in ("", ".", "..") or not _SEGMENT.match(seg):
                raise ValueError(
                    f"invalid {what} path {prefix!r}: empty, '.', '..', control characters and "
                    "backslashes are not allowed in its segments"
                )
    return prefix


def parse_location(text: str) -> RemoteLocation | None:
    """The remote location ``text`` names, None for a local folder; ValueError if malformed."""
    if "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported statement location scheme {scheme!r}: use {SCHEMES}")
    if scheme == "s3":
        loc = parse_s3_uri(text)
        return RemoteLocation("s3", loc.bucket, loc.prefix)
    u = urlsplit(text)
    if u.query or u.fragment:
        raise ValueError(f"a {scheme}:// location takes no query or fragment")
    if scheme in ("gs", "az"):
        name = u.netloc
        rule, kind = (_GCS_BUCKET, "GCS bucket") if scheme == "gs" else (_CONTAINER, "container")
        if "@" in name or not rule.match(name):
            raise ValueError(f"invalid {kind} name {name!r}")
        return RemoteLocation(scheme, name, _prefix(u.path, scheme))  # type: ignore[arg-type]
    if u.password is not None:
        # Never echo the value: it holds a secret.
        raise ValueError("an sftp:// location must not carry a password: use password_env")
    host, user = u.hostname or "", u.username
    if not _HOST.match(host):
        raise ValueError(f"invalid SFTP host {host!r}")
    if user is None or not _USER.match(user):
        raise ValueError("an sftp:// location needs a plain user name: sftp://USER@HOST/PATH")
    try:
        port = u.port or 22
    except ValueError:
        raise ValueError("invalid SFTP port") from None
    return RemoteLocation("sftp", host, _prefix(u.path, "SFTP"), port, user)


class StatementFilesSettings(ConnectorSettings, S3Options):
    """Where the statements are: a local folder, or a remote folder laid out the same way.

    The S3 options (``endpoint_url``, ``region``, ``profile``, paging) come from the AWS
    connectors; the retry and timeout options apply to every remote kind.
    """

    type: Literal["statement_files"]
    #: Folder holding one sub-folder per period (YYYY-MM) of statement files, or the URI of
    #: one: ``s3://``, ``gs://``, ``az://`` or ``sftp://USER@HOST[:PORT]/PATH``.
    path: str
    #: GCS: the project to bill requests to (default: the credentials' project).
    project: str | None = None
    #: Azure: name of the environment variable holding a storage connection string.
    connection_string_env: EnvName | None = None
    #: Azure: blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net (with ``sas_token_env``).
    account_url: AccountUrl | None = None
    #: Azure: name of the environment variable holding a SAS token (read + list).
    sas_token_env: EnvName | None = None
    #: SFTP: known_hosts file holding the server's host key (required: no key, no connection).
    known_hosts: str | None = None
    #: SFTP: name of the environment variable holding the private key (OpenSSH or PEM text).
    private_key_env: EnvName | None = None
    #: SFTP: path of the private key file (the file is the secret; its path is not).
    private_key_path: str | None = None
    #: SFTP: name of the environment variable holding the private key's passphrase.
    passphrase_env: EnvName | None = None
    #: SFTP: name of the environment variable holding the password.
    password_env: EnvName | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_location(v)
        return v

    # Same name as S3Options' validator, so it replaces it: the rule is per scheme here.
    @model_validator(mode="after")
    def _remote_fields_need_s3(self) -> StatementFilesSettings:
        loc = self.location
        scheme = loc.scheme if loc else None
        for kind, fields in _FIELDS.items():
            given = [f for f in fields if getattr(self, f) is not None]
            if given and kind != scheme:
                raise ValueError(f"{', '.join(given)} only apply to a {kind}:// path")
        if scheme == "az":
            if (self.connection_string_env is None) == (self.account_url is None):
                raise ValueError(
                    "an az:// path needs exactly one credential source: connection_string_env, "
                    "or account_url with sas_token_env"
                )
            if (self.account_url is None) != (self.sas_token_env is None):
                raise ValueError("account_url and sas_token_env go together")
        if scheme == "sftp":
            if self.known_hosts is None:
                raise ValueError("an sftp:// path needs known_hosts (the server's host key)")
            if self.private_key_env and self.private_key_path:
                raise ValueError("give private_key_env or private_key_path, not both")
            if not (self.private_key_env or self.private_key_path or self.password_env):
                raise ValueError(
                    "an sftp:// path needs private_key_env, private_key_path or password_env"
                )
            if self.passphrase_env and not (self.private_key_env or self.private_key_path):
                raise ValueError("passphrase_env needs a private key")
        return self

    @property
    def location(self) -> RemoteLocation | None:
        """The remote location, or None for a local folder."""
        return parse_location(self.path)


__all__ = ["RemoteLocation", "StatementFilesSettings", "parse_location"]
