"""Databricks billing: ``system.billing.usage`` priced with ``system.billing.list_prices``.

Local form (what ``locate`` reads): the two system tables unloaded as Parquet, one folder per
period::

    <path>/<YYYY-MM>/usage/*.parquet        usage rows whose usage_date is in the month
    <path>/<YYYY-MM>/list_prices/*.parquet  the whole price history (small)

e.g. in a Databricks notebook, ``spark.table("system.billing.usage").where("usage_date >=
'2026-10-01' AND usage_date < '2026-11-01'").write.parquet(".../2026-10/usage")``. Money is
usage_quantity x the list price in force (Databricks' tables hold list prices only, so
negotiated discounts are not visible here). Corrections are rows of their own
(record_type RETRACTION with negative quantity, RESTATEMENT), so every row is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb

from connectors.base import Capabilities, Connector, Delivery, NativeFile, NormalizeContext
from connectors.databricks import helpers as h
from connectors.databricks.settings import DatabricksSettings
from revshare.periods import Period
from revshare.schema import billing_select_sql
from revshare.sqlutil import lit

__all__ = ["DatabricksConnector", "DatabricksSettings"]


class DatabricksConnector(Connector):
    type: ClassVar[str] = "databricks"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("parquet",), restates=True, late_days=2
    )
    settings_model: ClassVar[type[DatabricksSettings]] = DatabricksSettings
    settings: DatabricksSettings

    def locate(self, period: Period) -> Delivery:
        folder = self.local_root(self.settings.path) / str(period)
        files: dict[str, list[NativeFile]] = {}
        for table in (h.USAGE_DIR, h.PRICES_DIR):
            found = sorted((folder / table).glob("*.parquet"))
            if not found:
                raise self.error(
                    f"no {table} Parquet files for {period} in {folder / table} "
                    f"(unload system.billing.{table} there)",
                    file=f"{period}/{table}",
                )
            files[table] = [NativeFile(p, f"{period}/{table}/{p.name}") for p in found]
        return Delivery(tuple(files[h.USAGE_DIR] + files[h.PRICES_DIR]))

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        usage = [r for r in ctx.files if f"/{h.USAGE_DIR}/" in f"/{r}"]
        prices = [r for r in ctx.files if f"/{h.PRICES_DIR}/" in f"/{r}"]
        if not usage or not prices:
            raise self.error(f"snapshot {ctx.snapshot_id} lacks usage or list_prices files")
        con = duckdb.connect()
        try:
            price_scan = self._prices(con, [ctx.file(r) for r in prices], prices[0])
            parts = [self._usage_sql(con, ctx, rel, price_scan) for rel in usage]
            union = "\nUNION ALL\n".join(f"({p})" for p in parts)
            self.refuse_repeated_line_ids(con, union, "record_id")
        finally:
            con.close()
        return self.union_files(parts)

    # -- list prices ------------------------------------------------------------------------

    def _prices(self, con: duckdb.DuckDBPyConnection, paths: list[Path], rel: str) -> str:
        """A FROM item over the price history, validated (a NULL or over-precise price would
        otherwise price usage at nothing or round it silently)."""
        src = h.scan_many(paths)
        cols = self._describe(con, src, rel)
        missing = [c for c in h.PRICES_REQUIRED if c not in cols]
        if missing:
            raise self.error(
                f"list_prices lacks the column {missing[0]}", file=rel, column=missing[0]
            )
        if not h.has_field(cols["pricing"], "default"):
            raise self.error("list_prices.pricing has no 'default' price", file=rel,
                             column="pricing")  # fmt: skip
        price = h.price_expr(cols["pricing"], self.settings.price)
        bad = con.sql(
            f"SELECT sku_name, {price} FROM {src} AS p WHERE {price} IS NULL "
            f"OR CAST({price} AS {h.PRICE_SQL}) <> {price} OR currency_code IS NULL LIMIT 1"
        ).fetchone()
        if bad:
            raise self.error(
                f"list price of {bad[0]} is {bad[1]!r}: missing, or more than 10 decimal "
                "places, or without currency_code",
                file=rel,
                column="pricing",
            )
        return (
            f"(SELECT sku_name, cloud, usage_unit, currency_code, price_start_time, "
            f"price_end_time, {price} AS unit_price FROM {src} AS p)"
        )

    # -- usage ------------------------------------------------------------------------------

    def _describe(self, con: duckdb.DuckDBPyConnection, src: str, rel: str) -> dict[str, str]:
        try:
            return {r[0]: r[1] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        except duckdb.Error as exc:
            raise self.error(f"cannot read as Parquet: {exc}", file=rel) from None

    def _usage_sql(
        self, con: duckdb.DuckDBPyConnection, ctx: NormalizeContext, rel: str, prices: str
    ) -> str:
        src = h.scan(ctx.file(rel))
        cols = self._describe(con, src, rel)
        missing = [c for c in h.USAGE_REQUIRED if c not in cols]
        if missing:
            raise self.error(f"usage lacks the column {missing[0]}", file=rel, column=missing[0])
        qty = h.qty_expr("usage_quantity", cols["usage_quantity"])
        row = "(u.file_row_number + 1)"
        joined = (
            f"(SELECT u.*, {row} AS _row, p.unit_price, p.currency_code, "
            "count(p.unit_price) OVER (PARTITION BY u.file_row_number) AS _prices "
            f"FROM {src} AS u LEFT JOIN {prices} AS p ON p.sku_name = u.sku_name "
            "AND p.cloud = u.cloud AND p.usage_unit = u.usage_unit "
            "AND u.usage_start_time >= p.price_start_time "
            "AND (p.price_end_time IS NULL OR u.usage_start_time < p.price_end_time))"
        )
        self._check_rows(con, joined, rel, qty)
        meta = cols.get("usage_metadata", "")
        endpoint = (
            "u.usage_metadata.endpoint_name" if h.has_field(meta, "endpoint_name") else "NULL"
        )
        endpoint_id = "u.usage_metadata.endpoint_id" if h.has_field(meta, "endpoint_id") else "NULL"
        product = "u.billing_origin_product" if "billing_origin_product" in cols else "NULL"
        tags = "CAST(to_json(u.custom_tags) AS VARCHAR)" if "custom_tags" in cols else "NULL"
        qty_u = qty.replace('"usage_quantity"', "u.usage_quantity")
        cost = h.cost_expr(qty_u, "u.unit_price")
        exprs = {
            "BilledCost": cost,
            "BillingAccountId": "u.account_id",
            "BillingCurrency": "upper(u.currency_code)",
            "BillingPeriodStart": f"CAST({lit(ctx.period.start.isoformat())} AS TIMESTAMPTZ)",
            "BillingPeriodEnd": f"CAST({lit(ctx.period.end.isoformat())} AS TIMESTAMPTZ)",
            "ChargeCategory": "'Usage'",
            "ChargeClass": "CASE WHEN u.record_type <> 'ORIGINAL' THEN 'Correction' END",
            "ChargeDescription": "u.sku_name",
            "ChargeFrequency": "'Usage-Based'",
            "ChargePeriodStart": "u.usage_start_time",
            "ChargePeriodEnd": "u.usage_end_time",
            "ConsumedQuantity": qty_u,
            "ConsumedUnit": "u.usage_unit",
            "EffectiveCost": cost,
            "InvoiceIssuerName": "'Databricks'",
            "ListCost": cost,
            "ListUnitPrice": "u.unit_price",
            "PricingCurrency": "upper(u.currency_code)",
            "PricingQuantity": qty_u,
            "PricingUnit": "u.usage_unit",
            "ProviderName": "'Databricks'",
            "PublisherName": "'Databricks'",
            "ResourceId": endpoint_id,
            "ResourceName": endpoint,
            "ServiceCategory": f"CASE WHEN {product} = 'MODEL_SERVING' "
            "THEN 'AI and Machine Learning' END",
            "ServiceName": f"COALESCE({product}, 'Databricks')",
            "SkuId": "u.sku_name",
            "SubAccountId": "u.workspace_id",
            "SubAccountType": "'Workspace'",
            "Tags": tags,
            "x_PartnerId": lit(ctx.partner_id),
            "x_SkuKey": f"u.sku_name || COALESCE('|' || {endpoint}, '')",
            "x_NativeLineId": "u.record_id",
            "x_SnapshotId": lit(ctx.snapshot_id),
            "x_SourceFile": lit(rel),
            "x_SourceRow": "u._row",
        }
        return (
            f"SELECT {billing_select_sql(exprs)}\nFROM {joined} AS u\n"
            f"WHERE {_in_period(ctx.period)}"
        )

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every usage row (list prices are a price list, not lines); a row of another
        usage month is rejected with that reason."""
        keep = [(_in_period(ctx.period), "other usage month")]
        return "\nUNION ALL\n".join(
            self.accounting_part(
                rel, f"{h.scan(ctx.file(rel))} AS u", "u.file_row_number + 1", keep
            )
            for rel in ctx.files
            if f"/{h.USAGE_DIR}/" in f"/{rel}"
        )

    def _check_rows(self, con: duckdb.DuckDBPyConnection, joined: str, rel: str, qty: str) -> None:
        """The first bad usage row, named by file, row and column, before any SQL is handed
        out: an empty required value, a quantity that is no number, an unknown record_type,
        or a row that matches no list price, or several."""
        cases: list[tuple[str, str, str]] = [
            (f"{h.q(c)} IS NULL", c, "is empty") for c in h.USAGE_REQUIRED
        ]
        cases.append(
            (
                f"record_type NOT IN ({', '.join(lit(t) for t in h.RECORD_TYPES)})",
                "record_type",
                f"is not one of {', '.join(h.RECORD_TYPES)}",
            )
        )
        try_qty = qty.replace("CAST(", "TRY_CAST(", 1)
        cases.append((f"{try_qty} IS NULL", "usage_quantity", "is not a decimal number"))
        cases.append(("_prices = 0", "sku_name", "has no list price in force at usage_start_time"))
        cases.append(("_prices > 1", "sku_name", "has overlapping list prices at usage_start_time"))
        when = " ".join(f"WHEN {c} THEN {lit(col)}" for c, col, _ in cases)
        val = " ".join(f"WHEN {c} THEN CAST({h.q(col)} AS VARCHAR)" for c, col, _ in cases)
        why = " ".join(f"WHEN {c} THEN {lit(w)}" for c, _, w in cases)
        try:
            bad = con.sql(
                f"SELECT r, c, v, w FROM (SELECT _row AS r, CASE {when} END AS c, "
                f"CASE {val} END AS v, CASE {why} END AS w FROM {joined}) "
                "WHERE c IS NOT NULL ORDER BY r LIMIT 1"
            ).fetchone()
        except duckdb.Error as exc:
            raise self.error(f"cannot read usage: {exc}", file=rel) from None
        if bad:
            r, col, v, w = bad
            raise self.error(f"{col} {w}: {v!r}", file=rel, row=int(r), column=col)


def _in_period(period: Period) -> str:
    return (
        f"u.usage_date >= DATE {lit(str(period.first_day))} "
        f"AND u.usage_date < DATE {lit(str(period.next().first_day))}"
    )
