from typing import Literal

from connectors.base import ConnectorSettings


class StatementFilesSettings(ConnectorSettings):
    type: Literal["statement_files"]
    #: Folder holding one sub-folder per period (YYYY-MM) of statement files.
    path: str
