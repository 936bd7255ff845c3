"""Partner statements in our published format, from a local folder, a bucket, a container or
an SFTP drop.

Layout: ``<path>/<YYYY-MM>/<anything>.csv|.json|.xlsx``; every revision a partner sends is a
file of its own and all are kept. A remote ``path`` (``s3://``, ``gs://``, ``az://``,
``sftp://``) is pulled by ``fetch`` into staging in that same layout (``remote.py``, the only
module that imports an SDK, loaded only then) and read by the same code as a local folder.
The format is documented in docs/statement-format.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb

from connectors.base import Capabilities, Connector, Delivery, NativeFile, NormalizeContext
from connectors.statement_files.helpers import (
    REQUIRED,
    TYPED,
    canonical_sql,
    json_lines_sql,
    raw_csv_sql,
)
from connectors.statement_files.settings import StatementFilesSettings
from connectors.statement_files.tolerant import header_map, tolerant_sql, xlsx_sql
from revshare.periods import Period
from revshare.sqlutil import lit

_SUFFIXES = (".csv", ".json", ".xlsx")


class StatementFilesConnector(Connector):
    type: ClassVar[str] = "statement_files"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="statement", formats=("csv", "json", "xlsx"), restates=True
    )
    settings_model: ClassVar[type[StatementFilesSettings]] = StatementFilesSettings
    settings: StatementFilesSettings

    def locate(self, period: Period) -> Delivery:
        if self.settings.location is not None:
            raise self.error(
                f"this source is remote ({self.settings.location.uri()}): it is pulled with "
                "fetch(), not read in place"
            )
        return self._files(self.local_root(self.settings.path), period)

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Local folder: ``locate``. Remote: download the period's files into
        ``staging/<YYYY-MM>/`` with their names, then read them as a local folder (so the
        snapshot of the same files is the same, whichever way they came)."""
        loc = self.settings.location
        if loc is None:
            return self.locate(period)
        from connectors.statement_files import remote  # the SDKs only when pulling

        remote.pull(self, loc, period, staging)
        local = self._files(staging, period)
        return Delivery(local.files, metadata={"source": loc.uri()})

    def _files(self, root: Path, period: Period) -> Delivery:
        folder = root / str(period)
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise self.error(f"no statement for {period} in {folder}")
        return Delivery(tuple(NativeFile(p, p.name) for p in files))

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        con = duckdb.connect()
        parts = []
        for rel in ctx.files:
            raw = self._raw(ctx.file(rel), rel)
            try:
                cols = [r[0] for r in con.execute(f"DESCRIBE {raw}").fetchall()]
                mapping = header_map(c for c in cols if c != "_row")
            except duckdb.Error as exc:
                raise self.error(f"cannot read statement: {exc}", file=rel) from None
            except ValueError as exc:
                raise self.error(str(exc), file=rel) from None
            missing = [c for c in REQUIRED if c not in mapping]
            if missing:
                raise self.error(
                    f"statement lacks column(s) {', '.join(missing)}", file=rel, column=missing[0]
                )
            rows = tolerant_sql(raw, mapping)
            self._check(con, rows, rel, ctx.period, mapping)
            parts.append(canonical_sql(rows, rel, ctx.snapshot_id))
        return "\nUNION ALL BY NAME\n".join(parts)

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every line of every statement file; none is rejected one by one (a line that
        cannot be read, or is for another period, refuses the whole statement)."""
        return "\nUNION ALL\n".join(
            self.accounting_part(rel, f"({self._raw(ctx.file(rel), rel)})", "_row")
            for rel in ctx.files
        )

    def _raw(self, path: Path, rel: str) -> str:
        suffix = rel.lower().rsplit(".", 1)[-1]
        if suffix == "json":
            return json_lines_sql(str(path))
        if suffix == "xlsx":
            try:
                return xlsx_sql(path)
            except Exception as exc:  # openpyxl raises many kinds for a bad workbook
                raise self.error(f"cannot read workbook: {exc}", file=rel) from None
        return raw_csv_sql(str(path))

    def _check(
        self,
        con: duckdb.DuckDBPyConnection,
        rows: str,
        rel: str,
        period: Period,
        mapping: dict[str, str],
    ) -> None:
        """Strict about what matters: every required value present, every number a number."""
        probes = [
            f"SELECT _row, '{c}' AS col, {c}__text AS v FROM ({rows}) "
            f"WHERE {c}__text IS NULL OR trim({c}__text) = ''"
            for c in REQUIRED
        ]
        probes += [
            f"SELECT _row, '{c}', {c}__text FROM ({rows}) "
            f"WHERE {c}__text IS NOT NULL AND trim({c}__text) <> '' "
            f"AND TRY_CAST({c} AS {t}) IS NULL"
            for c, t in {**TYPED, "period": "VARCHAR"}.items()
        ]
        probes.append(
            f"SELECT _row, 'period', {lit('@')} || period FROM ({rows}) WHERE period <> '{period}'"
        )
        bad = con.execute(" UNION ALL ".join(probes) + " ORDER BY 1 LIMIT 1").fetchone()
        if bad:
            row, col, val = bad
            what = "is empty" if val is None or not str(val).strip() else f"has {val!r}"
            if str(val).startswith("@"):
                what = f"is for period {val[1:]!r}, not {period}"
            raise self.error(f"{col} {what}", file=rel, row=row, column=mapping.get(col, col))
