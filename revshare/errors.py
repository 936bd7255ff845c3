"""Errors that name where bad data sits, so an operator can open the file and look."""

from __future__ import annotations


class SourceError(Exception):
    """A source could not be read or trusted. Names the source, and file/row/column if known."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ", ".join(
            f"{k} {v}"
            for k, v in (("file", self.file), ("row", self.row), ("column", self.column))
            if v is not None
        )
        return f"{self.source}: {self.message}" + (f" ({where})" if where else "")
