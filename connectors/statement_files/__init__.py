"""Partner statements in our published format, from a local folder.

Layout: ``<path>/<YYYY-MM>/<anything>.csv|.json``; every revision a partner sends is a file of
its own and all are kept. The format is documented in docs/statement-format.md.
"""

from __future__ import annotations

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
from revshare.periods import Period

_SUFFIXES = (".csv", ".json")


class StatementFilesConnector(Connector):
    type: ClassVar[str] = "statement_files"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="statement", formats=("csv", "json"), restates=True
    )
    settings_model: ClassVar[type[StatementFilesSettings]] = StatementFilesSettings
    settings: StatementFilesSettings

    def locate(self, period: Period) -> Delivery:
        folder = self.local_root(self.settings.path) / str(period)
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise self.error(f"no statement for {period} in {folder}")
        return Delivery(tuple(NativeFile(p, p.name) for p in files))

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        con = duckdb.connect()
        parts = []
        for rel in ctx.files:
            path = str(ctx.file(rel))
            raw = json_lines_sql(path) if rel.lower().endswith(".json") else raw_csv_sql(path)
            self._check(con, raw, rel, ctx.period)
            parts.append(canonical_sql(raw, rel, ctx.snapshot_id))
        return "\nUNION ALL BY NAME\n".join(parts)

    def _check(self, con: duckdb.DuckDBPyConnection, raw: str, rel: str, period: Period) -> None:
        """Strict about what matters: every required value present, every number a number."""
        try:
            cols = {r[0] for r in con.execute(f"DESCRIBE {raw}").fetchall()}
        except duckdb.Error as exc:
            raise self.error(f"cannot read statement: {exc}", file=rel) from None
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise self.error(
                f"statement lacks column(s) {', '.join(missing)}", file=rel, column=missing[0]
            )
        probes = [
            f"SELECT _row, '{c}' AS col, CAST({c} AS VARCHAR) AS v FROM ({raw}) "
            f"WHERE {c} IS NULL OR trim({c}) = ''"
            for c in REQUIRED
        ]
        probes += [
            f"SELECT _row, '{c}', {c} FROM ({raw}) "
            f"WHERE {c} IS NOT NULL AND TRY_CAST({c} AS {t}) IS NULL"
            for c, t in TYPED.items()
            if c in cols
        ]
        probes.append(f"SELECT _row, 'period', period FROM ({raw}) WHERE period <> '{period}'")
        bad = con.execute(" UNION ALL ".join(probes) + " ORDER BY 1 LIMIT 1").fetchone()
        if bad:
            row, col, val = bad
            what = "is empty" if val is None or not str(val).strip() else f"has {val!r}"
            if col == "period":
                what = f"is for period {val!r}, not {period}"
            raise self.error(f"{col} {what}", file=rel, row=row, column=col)
