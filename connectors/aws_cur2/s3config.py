"""Where an AWS Data Export sits in S3, validated before any request is made.

Shared by the CUR 2.0 and FOCUS connectors (both read Data Exports deliveries). No SDK import
here: settings are parsed on every config load, and only a pull needs boto3.

A bucket name from config ends up in request URLs and error messages, so it is checked against
S3's naming rules for general purpose buckets; an endpoint URL must not carry credentials (a
secret never sits in YAML: boto3 takes keys from the environment or the profile files).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

S3_SCHEME = "s3://"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BAD_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PROFILE = re.compile(r"^[A-Za-z0-9_.+@-]{1,128}$")
# Printable characters without backslash; S3 allows more, but a prefix with control
# characters or backslashes is a config mistake, and it also becomes a local path.
_PREFIX_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f\\]+$")


def validate_bucket(name: str) -> str:
    """Return ``name`` if S3 would accept it as a general purpose bucket, else ValueError."""
    why = None
    if not _BUCKET.match(name):
        why = "3-63 characters: lowercase letters, digits, '.' and '-', starting and ending "
        why += "with a letter or digit"
    elif ".." in name:
        why = "no two adjacent periods"
    elif name.startswith(_BAD_BUCKET_PREFIXES) or name.endswith(_BAD_BUCKET_SUFFIXES):
        why = "reserved prefix or suffix"
    else:
        try:
            ipaddress.IPv4Address(name)
            why = "not formatted as an IP address"
        except ValueError:
            pass
    if why:
        raise ValueError(f"invalid S3 bucket name {name!r} ({why})")
    return name


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``: the folder an export was configured to deliver into."""

    bucket: str
    prefix: str  # without leading or trailing '/', '' for the bucket root

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def uri(self, relpath: str = "") -> str:
        key = self.key(relpath) if relpath else self.prefix
        return f"{S3_SCHEME}{self.bucket}/{key}" if key else f"{S3_SCHEME}{self.bucket}"

    def relpath(self, key: str) -> str | None:
        """The key relative to the prefix, or None if it lies outside it."""
        if not self.prefix:
            return key
        head = self.prefix + "/"
        return key[len(head) :] if key.startswith(head) else None


def is_s3_uri(text: str) -> bool:
    return text.startswith(S3_SCHEME)


def parse_s3_uri(text: str) -> S3Location:
    """Parse and validate ``s3://bucket[/prefix]``; ValueError names what is wrong."""
    if not is_s3_uri(text):
        raise ValueError(f"not an s3:// URI: {text!r}")
    bucket, _, prefix = text[len(S3_SCHEME) :].partition("/")
    validate_bucket(bucket)
    prefix = prefix.strip("/")
    if prefix:
        if len(prefix.encode()) > 900:  # keys are at most 1024 bytes; leave room for the rest
            raise ValueError("S3 prefix is too long")
        for seg in prefix.split("/"):
            if seg in ("", ".", "..") or not _PREFIX_SEGMENT.match(seg):
                raise ValueError(
                    f"invalid S3 prefix {prefix!r}: empty, '.', '..', control characters and "
                    "backslashes are not allowed in its segments"
                )
    return S3Location(bucket, prefix)


class S3Options(BaseModel):
    """Remote settings shared by the connectors reading Data Exports from S3.

    Credentials are deliberately absent: boto3's standard chain finds them (environment
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
    or ``profile`` below, SSO, instance roles).
    """

    # A value that fails validation is not echoed in the error: it may be a secret pasted
    # into the wrong field (an endpoint URL with user:password@, say).
    model_config = ConfigDict(hide_input_in_errors=True)

    #: S3-compatible endpoint (an emulator, a VPC endpoint); None = AWS's own.
    endpoint_url: str | None = None
    #: Region of the bucket; None = from the environment / profile (AWS_REGION...).
    region: str | None = None
    #: Named profile in ~/.aws/config (a name, not a secret); None = the default chain.
    profile: str | None = None
    #: Keys per ListObjectsV2 page (S3's maximum is 1000).
    list_page_size: int = Field(default=1000, ge=1, le=1000)
    #: Calls per request before a transient error (5xx, throttling, timeouts) is final.
    retry_attempts: int = Field(default=5, ge=1, le=20)
    #: First backoff delay in seconds; doubles per attempt, capped at 8 s, with jitter.
    retry_base_delay: float = Field(default=0.5, ge=0, le=30)
    #: Connect and read timeout per request, in seconds.
    timeout_seconds: float = Field(default=60, gt=0, le=3600)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint_url must be an http(s) URL, got {v!r}")
        if parts.username or parts.password:
            # Never echo the value: it holds a secret.
            raise ValueError("endpoint_url must not carry credentials; use the AWS chain")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not _REGION.match(v):
            raise ValueError(f"region must look like us-east-1, got {v!r}")
        return v

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        if v is not None and not _PROFILE.match(v):
            raise ValueError(f"profile must be a plain profile name, got {v!r}")
        return v

    #: ``s3://BUCKET/PREFIX`` (pull from S3) or a local folder laid out the same way.
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if is_s3_uri(v):
            parse_s3_uri(v)
        return v

    @model_validator(mode="after")
    def _remote_fields_need_s3(self) -> S3Options:
        if self.remote is None and self.remote_fields_set():
            raise ValueError(
                f"{', '.join(self.remote_fields_set())} only apply when path is an s3:// URI"
            )
        return self

    @property
    def remote(self) -> S3Location | None:
        """The S3 location when the source is remote, else None (a local folder)."""
        return parse_s3_uri(self.path) if is_s3_uri(self.path) else None

    def remote_fields_set(self) -> list[str]:
        """Remote-only fields given explicitly (an error when ``path`` is local)."""
        return sorted(
            f for f in ("endpoint_url", "region", "profile") if getattr(self, f) is not None
        )
