"""The connector contract.

A connector knows one kind of source. It does two things, both side-effect free apart from
reading: ``locate`` finds the files of the newest complete delivery for a period, and
``normalize_sql`` turns a landed snapshot of those files into canonical rows, as one DuckDB
SELECT. Landing (copying into immutable snapshots), validation, catalog mapping and
reconciliation belong to the core and the flows, so every connector gets them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from revshare.errors import SourceError
from revshare.periods import Period

__all__ = [
    "Capabilities",
    "Connector",
    "ConnectorSettings",
    "Delivery",
    "NativeFile",
    "NativeRelation",
    "NormalizeContext",
    "SourceError",
]


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do; flows branch on these, never on provider names."""

    produces: Literal["billing", "statement"]
    formats: tuple[str, ...]
    #: True if the source rewrites earlier data for a period (so restatements can appear).
    restates: bool = False
    #: How many days after a period ends rows can still arrive.
    late_days: int = 0
    #: True if the source can aggregate to the reconciliation grain where the data sits.
    pushdown: bool = False


class ConnectorSettings(BaseModel):
    """Base for each connector's typed settings; ``type`` selects the connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


@dataclass(frozen=True)
class NativeFile:
    path: Path  # where to read it now
    relpath: str  # where it sits inside the delivery, kept verbatim in the snapshot


@dataclass(frozen=True)
class Delivery:
    """The files of one complete delivery, and the export's own version id if it has one."""

    files: tuple[NativeFile, ...]
    version: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NormalizeContext:
    partner_id: str
    period: Period
    snapshot_id: str
    snapshot_dir: Path  # landed copies, at snapshot_dir / relpath
    files: tuple[str, ...]  # relpaths, sorted

    def file(self, relpath: str) -> Path:
        return self.snapshot_dir / relpath


@dataclass(frozen=True)
class NativeRelation:
    """One landed native file as its native-format expectation suite reads it.

    ``sql`` is a DuckDB SELECT over the landed file with the columns as the vendor wrote them
    (no renaming: schema drift must be visible). ``params`` feed the suite's ``$PARAMETER``s,
    e.g. the row count the delivery's manifest promises for this file (tie-out).
    """

    suite: str
    file: str  # relpath in the snapshot
    sql: str
    params: dict[str, object] = field(default_factory=dict)


class Connector(ABC):
    type: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    settings_model: ClassVar[type[ConnectorSettings]]

    def __init__(self, settings: ConnectorSettings, data_dir: Path, source_name: str) -> None:
        self.settings = settings
        self.data_dir = data_dir
        #: Human name used in every error: "<partner>/<billing|statement>".
        self.source_name = source_name

    def error(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> SourceError:
        return SourceError(self.source_name, message, file=file, row=row, column=column)

    def refuse_repeated_line_ids(
        self, con: duckdb.DuckDBPyConnection, canonical_sql: str, native_column: str
    ) -> None:
        """A native line id seen twice means money counted twice (a file delivered twice, a
        row repeated): refuse the delivery, naming the later copy's file and row."""
        dup = con.sql(
            f'SELECT "x_SourceFile", "x_SourceRow", "x_NativeLineId" FROM ({canonical_sql}) '
            'QUALIFY count(*) OVER (PARTITION BY "x_NativeLineId") > 1 '
            'ORDER BY "x_SourceFile" DESC, "x_SourceRow" DESC LIMIT 1'
        ).fetchone()
        if dup:
            rel, row, line_id = dup
            raise self.error(
                f"{native_column} {line_id!r} appears more than once in the delivery",
                file=rel,
                row=int(row),
                column=native_column,
            )

    def local_root(self, path: str | Path) -> Path:
        """Resolve a configured local path against the data folder."""
        p = Path(path)
        return p if p.is_absolute() else self.data_dir / p

    @abstractmethod
    def locate(self, period: Period) -> Delivery:
        """Find the newest complete delivery for ``period``; raise SourceError if none."""

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Bring the newest complete delivery for ``period`` to local files.

        A remote connector downloads into ``staging`` (laid out exactly as ``locate`` would
        find it on disk, so ``normalize_sql`` is the same for both) and returns the local
        files; the core lands them and removes ``staging``. Local sources need not override
        this: their files are read where they are.
        """
        return self.locate(period)

    @abstractmethod
    def normalize_sql(self, ctx: NormalizeContext) -> str:
        """One DuckDB SELECT yielding canonical rows (``revshare.schema``) for the snapshot.

        Build the projection with ``billing_select_sql`` or ``statement_select_sql`` so the
        column list and types come from the one schema. Raise SourceError, naming file, row
        and column, for input that cannot be read; never guess.
        """

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """The landed native files for the native-format suites (``expectations/``), validated
        before ``normalize_sql``. Default: none (the canonical suite still runs)."""
        return []
