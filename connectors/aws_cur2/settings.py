"""Settings of the AWS Data Exports (CUR 2.0) connector (``type: aws_cur2`` in partners.yaml).

``path`` selects the mode: an ``s3://bucket/prefix`` URI pulls from S3 (``fetch``), anything
else is a local folder laid out the same way (``locate``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.aws_cur2.s3config import S3Options
from connectors.base import ConnectorSettings

# AWS allows letters, digits, '-' and '_' in export names; anything else cannot be ours and
# would end up inside paths and S3 keys.
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def check_export_name(v: str) -> str:
    if not _EXPORT_NAME.match(v):
        raise ValueError(f"export_name must be letters, digits, '-' or '_', got {v!r}")
    return v


class AwsCur2Settings(ConnectorSettings, S3Options):
    """Where the export's S3 prefix is (or is mirrored locally), and which export to read."""

    type: Literal["aws_cur2"]
    #: ``s3://BUCKET/PREFIX`` (the export's S3 destination: pull from S3), or the local copy
    #: of it holding ``EXPORT/data/...`` and ``EXPORT/metadata/...`` (relative paths resolve
    #: against the data folder).
    path: str
    #: The export's name as created in Data Exports; it names folders, files and the manifest.
    export_name: str

    @field_validator("export_name")
    @classmethod
    def _export(cls, v: str) -> str:
        return check_export_name(v)
