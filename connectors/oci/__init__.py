"""Oracle Cloud (OCI) cost reports: the CSV(.gz) files Oracle writes every few hours to
``reports/cost-csv/`` in the tenancy's usage-report bucket, copied into a local folder.

A report file covers hours, not a month, and Oracle keeps adding files (corrections arrive as
new rows flagged ``lineItem/isCorrection``), so the delivery is every report in the folder and
the period is applied while reading, by ``lineItem/intervalUsageStart`` (UTC).
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from connectors.base import Capabilities, Connector, Delivery, NativeFile, NormalizeContext
from connectors.oci import helpers as h
from connectors.oci.settings import OciSettings
from revshare.periods import Period
from revshare.schema import billing_select_sql
from revshare.sqlutil import lit

__all__ = ["OciConnector", "OciSettings"]


class OciConnector(Connector):
    type: ClassVar[str] = "oci"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("csv", "csv.gz"), restates=True, late_days=3
    )
    settings_model: ClassVar[type[OciSettings]] = OciSettings
    settings: OciSettings

    def locate(self, period: Period) -> Delivery:
        """Every cost report under the folder (a report holds hours of any month, so the
        period cannot be told from the file; it is applied when reading)."""
        root = self.local_root(self.settings.path)
        if not root.is_dir():
            raise self.error(f"OCI cost report folder {root} does not exist")
        files = [
            NativeFile(p, p.relative_to(root).as_posix())
            for p in root.glob(self.settings.glob)
            if p.is_file()
            and h.is_data(p.name)
            and not any(s.startswith(".") for s in p.relative_to(root).parts)
        ]
        if not files:
            raise self.error(f"no OCI cost reports (.csv, .csv.gz) under {root} for {period}")
        return Delivery(tuple(sorted(files, key=lambda f: f.relpath)))

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        con = duckdb.connect()
        try:
            parts = [self._file_sql(con, ctx, rel) for rel in ctx.files if h.is_data(rel)]
            if not parts:
                raise self.error(f"no cost reports in snapshot {ctx.snapshot_id}")
            union = "\nUNION ALL\n".join(f"({p})" for p in parts)
            self.refuse_repeated_line_ids(con, union, "lineItem/referenceNo")
        finally:
            con.close()
        return self.union_files(parts)

    def _columns(self, con: duckdb.DuckDBPyConnection, scan: str, rel: str) -> list[str]:
        try:
            described = con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        except duckdb.Error as exc:
            raise self.error(f"cannot read as CSV: {exc}", file=rel) from None
        return [r[0] for r in described]

    def _file_sql(self, con: duckdb.DuckDBPyConnection, ctx: NormalizeContext, rel: str) -> str:
        scan = h.scan_sql(ctx.file(rel))
        *columns, row_col = self._columns(con, scan, rel)
        if "cost/myCost" not in columns and "usage/consumedQuantity" in columns:
            raise self.error("this is an OCI usage report, not a cost report", file=rel)
        missing = [c for c in h.REQUIRED if c not in columns]
        if missing:
            raise self.error(
                f"OCI cost report lacks the column {missing[0]}", file=rel, column=missing[0]
            )
        row = h.q(row_col)
        try:
            bad = con.sql(h.check_sql(columns, scan, row)).fetchone()
        except duckdb.Error as exc:
            raise self.error(f"cannot read as CSV: {exc}", file=rel) from None
        if bad:
            r, col, val, why = bad
            raise self.error(f"{col} {why}: {val!r}", file=rel, row=int(r), column=col)
        exprs = h.canonical_exprs(columns, self.settings.sku_key_column)
        start = exprs["ChargePeriodStart"]
        exprs.update(
            {
                "BillingPeriodStart": f"date_trunc('month', {start})",
                "BillingPeriodEnd": f"date_trunc('month', {start}) + INTERVAL 1 MONTH",
                "x_PartnerId": lit(ctx.partner_id),
                "x_SnapshotId": lit(ctx.snapshot_id),
                "x_SourceFile": lit(rel),
                "x_SourceRow": row,
            }
        )
        return (
            f"SELECT {billing_select_sql(exprs)}\nFROM {scan} AS src\n"
            f"WHERE {_in_period(start, ctx.period)}"
        )

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every row of the cost reports; a row charged in another month is rejected."""
        parts = []
        con = duckdb.connect()
        try:
            for rel in ctx.files:
                if not h.is_data(rel):
                    continue
                scan = h.scan_sql(ctx.file(rel))
                *columns, row_col = self._columns(con, scan, rel)
                start = h.canonical_exprs(columns, self.settings.sku_key_column)[
                    "ChargePeriodStart"
                ]
                keep = [(_in_period(start, ctx.period), "other billing period")]
                parts.append(self.accounting_part(rel, f"{scan} AS src", h.q(row_col), keep))
        finally:
            con.close()
        return "\nUNION ALL\n".join(parts)


def _in_period(start: str, period: Period) -> str:
    return (
        f"{start} >= CAST({lit(period.start.isoformat())} AS TIMESTAMPTZ) "
        f"AND {start} < CAST({lit(period.end.isoformat())} AS TIMESTAMPTZ)"
    )
