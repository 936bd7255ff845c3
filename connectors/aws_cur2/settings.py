"""Settings of the AWS Data Exports (CUR 2.0) connector (``type: aws_cur2`` in partners.yaml)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.base import ConnectorSettings

# AWS allows letters, digits, '-' and '_' in export names; anything else cannot be ours and
# would end up inside paths.
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class AwsCur2Settings(ConnectorSettings):
    """Where the export's S3 prefix is mirrored locally, and which export to read."""

    type: Literal["aws_cur2"]
    #: The local copy of ``s3://BUCKET/PREFIX/``: it holds ``EXPORT/data/...`` and
    #: ``EXPORT/metadata/...``. Relative paths resolve against the data folder.
    path: str
    #: The export's name as created in Data Exports; it names folders, files and the manifest.
    export_name: str

    @field_validator("export_name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _EXPORT_NAME.match(v):
            raise ValueError(f"export_name must be letters, digits, '-' or '_', got {v!r}")
        return v
