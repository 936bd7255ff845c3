"""The licensor's own usage log through a partner (probe usage), from a local folder.

Layout: ``<path>/<YYYY-MM>/<anything>.csv|.jsonl``: one line per request the licensor's own
account made through the partner, naming the model and the token unit itself. A statement-only
partner's statement must cover this usage (``revshare.statement_only``). The format is in
this folder's README.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from connectors.base import Capabilities, Connector, Delivery, NativeFile, NormalizeContext
from connectors.usage_log.helpers import REQUIRED, TYPED, canonical_sql, in_period, raw_sql
from connectors.usage_log.settings import UsageLogSettings
from revshare.periods import Period
from revshare.schema import TOKEN_UNITS
from revshare.sqlutil import lit

__all__ = ["UsageLogConnector", "UsageLogSettings"]

_SUFFIXES = (".csv", ".jsonl")


class UsageLogConnector(Connector):
    type: ClassVar[str] = "usage_log"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="usage", formats=("csv", "jsonl"), restates=False
    )
    settings_model: ClassVar[type[UsageLogSettings]] = UsageLogSettings
    settings: UsageLogSettings

    def locate(self, period: Period) -> Delivery:
        folder = self.local_root(self.settings.path) / str(period)
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise self.error(f"no usage log for {period} in {folder}")
        return Delivery(tuple(NativeFile(p, p.name) for p in files))

    def _bounds(self, period: Period) -> tuple[str, str]:
        return (
            f"TIMESTAMPTZ {lit(f'{period.start:%Y-%m-%d} 00:00:00+00')}",
            f"TIMESTAMPTZ {lit(f'{period.end:%Y-%m-%d} 00:00:00+00')}",
        )

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        con = duckdb.connect()
        parts = []
        try:
            for rel in ctx.files:
                raw = raw_sql(str(ctx.file(rel)), rel.lower().endswith(".jsonl"))
                has = self._columns(con, raw, rel)
                self._check(con, raw, rel, has)
                bounds = self._bounds(ctx.period)
                parts.append(
                    canonical_sql(
                        raw,
                        rel,
                        ctx.snapshot_id,
                        ctx.partner_id,
                        bounds,
                        self.settings.currency,
                        has,
                    )
                )
            union = "\nUNION ALL\n".join(f"({p})" for p in parts)
            self.refuse_repeated_line_ids(con, union, "request_id")
        finally:
            con.close()
        return self.union_files(parts)

    def row_accounting_sql(self, ctx: NormalizeContext) -> str | None:
        start, end = self._bounds(ctx.period)
        return "\nUNION ALL\n".join(
            self.accounting_part(
                rel,
                f"({raw_sql(str(ctx.file(rel)), rel.lower().endswith('.jsonl'))})",
                "_row",
                [(in_period(start, end), "outside the period")],
            )
            for rel in ctx.files
        )

    def _columns(self, con: duckdb.DuckDBPyConnection, raw: str, rel: str) -> set[str]:
        try:
            cols = {r[0] for r in con.execute(f"DESCRIBE {raw}").fetchall()}
        except duckdb.Error as exc:
            raise self.error(f"cannot read usage log: {exc}", file=rel) from None
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise self.error(f"usage log lacks column {missing[0]}", file=rel, column=missing[0])
        return cols

    def _check(self, con: duckdb.DuckDBPyConnection, raw: str, rel: str, has: set[str]) -> None:
        """Strict: every required value present, every number a number, every unit known."""
        probes = [
            f"SELECT _row, '{c}' AS col, {c} AS v FROM ({raw}) WHERE {c} IS NULL OR trim({c}) = ''"
            for c in REQUIRED
        ]
        probes += [
            f"SELECT _row, '{c}', {c} FROM ({raw}) WHERE {c} IS NOT NULL AND trim({c}) <> '' "
            f"AND TRY_CAST({c} AS {t}) IS NULL"
            for c, t in TYPED.items()
            if c in has
        ]
        units = ", ".join(lit(u) for u in TOKEN_UNITS)
        probes.append(f"SELECT _row, 'unit', unit FROM ({raw}) WHERE trim(unit) NOT IN ({units})")
        bad = con.execute(" UNION ALL ".join(probes) + " ORDER BY 1 LIMIT 1").fetchone()
        if bad:
            row, col, val = bad
            what = "is empty" if val is None or not str(val).strip() else f"has {val!r}"
            raise self.error(f"{col} {what}", file=rel, row=row, column=col)
