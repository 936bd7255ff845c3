"""The connector contract.

A connector knows one kind of source. It does two things, both side-effect free apart from
reading: ``locate`` finds the files of the newest complete delivery for a period, and
``normalize_sql`` turns a landed snapshot of those files into canonical rows, as one DuckDB
SELECT. Landing (copying into immutable snapshots), validation, catalog mapping and
reconciliation belong to the core and the flows, so every connector gets them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from revshare.errors import SourceError
from revshare.periods import Period
from revshare.sqlutil import lit

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

    #: ``usage``: billing-shaped lines that already name the licensed model and unit (a usage
    #: log), so no catalog applies.
    produces: Literal["billing", "statement", "usage"]
    formats: tuple[str, ...]
    #: True if the source rewrites earlier data for a period (so restatements can appear).
    restates: bool = False
    #: How many days after a period ends rows can still arrive.
    late_days: int = 0
    #: True if the source can aggregate to the reconciliation grain where the data sits.
    pushdown: bool = False


class ConnectorSettings(BaseModel):
    """Base for each connector's typed settings; ``type`` selects the connector."""

    # A rejected value is never echoed (``input_value`` in pydantic's message): it may be a
    # secret pasted into the wrong field.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
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
    #: relpath -> the Parquet copy ``revshare.stages.decode`` parsed it into, for the files the
    #: connector's ``decode_sql`` names. Empty when decoding was not possible.
    decoded: Mapping[str, Path] = field(default_factory=dict)

    def file(self, relpath: str) -> Path:
        return self.snapshot_dir / relpath

    def read(self, relpath: str, native: str) -> str:
        """The SELECT to scan ``relpath`` with: its decoded Parquet copy when the core made one,
        else ``native`` (the connector's ``decode_sql`` for it, or any SELECT of the same
        columns), so a gzipped JSON or CSV file is parsed once per run, not once per pass."""
        copy = self.decoded.get(relpath)
        return f"SELECT * FROM read_parquet({lit(copy)})" if copy is not None else native


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
    #: ``sql`` reads Parquet (the landed file or its decoded copy): each check then reads only
    #: its own columns, so validation need not load the file into a temporary table first.
    columnar: bool = False


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

    def row_accounting_sql(self, ctx: NormalizeContext) -> str | None:
        """Every line-bearing native row of the snapshot as ``(src_file, src_row, reason)``:
        ``reason`` is NULL for a row ``normalize_sql`` turns into canonical lines and names why
        for a row it deliberately leaves out (another billing period, another provider...).

        The core checks, in SQL, that the rows kept here are exactly the distinct
        ``(x_SourceFile, x_SourceRow)`` of the canonical output, so rows read = rows normalized
        + rows rejected (docs/security.md). None: the connector does not count its rows."""
        return None

    @staticmethod
    def union_files(parts: Sequence[str]) -> str:
        """One SELECT per landed file, combined. Canonical lines have no order: every reader
        groups, joins or sorts them, and every result file is sorted on its own columns, so a
        rerun still writes byte-identical results.

        This was an ``ORDER BY`` on (file position, row), for byte-identical canonical files.
        It did not give them: at 1M lines per source DuckDB 1.5.5 wrote the sorted rows' row
        groups out of order, differently on each run. It cost a sort of every column of
        every line, and at 10M lines that sort ran out of memory under caps of 1.5, 2 and
        4 GB and with one thread (docs/performance.md)."""
        return "\nUNION ALL\n".join(f"({p})" for p in parts)

    @staticmethod
    def accounting_part(
        file: str, source: str, row: str, keep: Sequence[tuple[str, str]] = ()
    ) -> str:
        """One file's rows for ``row_accounting_sql``. ``keep`` holds the conditions of the
        connector's WHERE, each with the reason a row failing it is rejected (a NULL condition
        fails, as it does in WHERE)."""
        reason = (
            "CASE "
            + " ".join(f"WHEN NOT coalesce({cond}, false) THEN {lit(why)}" for cond, why in keep)
            + " END"
            if keep
            else "CAST(NULL AS VARCHAR)"
        )
        return (
            f"SELECT {lit(file)} AS src_file, CAST({row} AS BIGINT) AS src_row, "
            f"{reason} AS reason FROM {source}"
        )

    def diagnose(self, ctx: NormalizeContext) -> None:
        """Called only when the canonical SELECT failed: raise the SourceError that names the
        file, row and column of the value it choked on, or return to let the core report the
        engine's own message.

        So a check the SELECT makes by itself, a strict cast of every row it keeps, need not
        scan the files up front as well: ``normalize_sql`` can leave it to this error path
        (the Azure connector does, for its money columns: 10 s of a 9.3M-row month)."""
        return None

    def unreadable_file(self, ctx: NormalizeContext) -> str | None:
        """The first landed file that cannot be decoded in full, or None.

        For errors the engine reports without a file (a damaged Parquet page surfaces only
        when a query decodes it): each native relation is read completely, on the error path
        only, so the refusal can name the file to look at."""
        con = duckdb.connect()
        try:
            for rel in self.native_relations(ctx):
                try:
                    con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM ({rel.sql})").fetchall()
                except duckdb.Error:
                    return rel.file
        finally:
            con.close()
        return None

    # -- warehouse pushdown (``Capabilities.pushdown``, docs/scaling.md) -------------------

    @property
    def pushdown_enabled(self) -> bool:
        """The source can aggregate where the data sits and its settings ask for it: ``fetch``
        then lands the period summed to (about) the reconciliation grain."""
        return self.capabilities.pushdown and bool(getattr(self.settings, "pushdown", False))

    def fetch_lines(self, period: Period, staging: Path, sku_keys: Sequence[str]) -> Delivery:
        """Pushdown: the native rows of ``sku_keys`` only, in the layout ``fetch`` gives
        without pushdown (the lines behind discrepancies, pulled after reconciliation)."""
        raise self.error("this source cannot pull the lines behind a pushdown reconciliation")

    def line_weights_sql(self, ctx: NormalizeContext) -> str | None:
        """Pushdown: ``(src_file, src_row, n)``, the native rows each aggregated row of the
        snapshot stands for (rows not listed stand for one). None: not aggregated."""
        return None

    def decode_sql(self, ctx: NormalizeContext, relpath: str) -> str | None:
        """The full read of one landed text file (every column, typed as the connector reads
        it, with its row number), for ``revshare.stages.decode`` to parse once into Parquet;
        the connector then reads it through ``ctx.read``. None (the default): read as landed.

        Only an optimization: if any file fails to decode, the run reads the landed files as
        they are, and the connector's own reading names the file, row and column at fault."""
        return None

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """The landed native files for the native-format suites (``expectations/``), validated
        before ``normalize_sql``. Default: none (the canonical suite still runs)."""
        return []
