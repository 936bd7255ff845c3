"""Warehouse pushdown, the core's half: put the line detail back after reconciling sums.

With ``pushdown: true`` a warehouse source (``Capabilities.pushdown``) lands its period summed
in the warehouse to a grain finer than the reconciliation's (per SKU key, region, currency and
UTC day: everything the reconciliation groups, prices or converts by). The reconciliation then
runs unchanged on those rows: its figures are sums, DECIMAL sums of exact sums are the same
sums, so tokens, revenue, shares and discrepancy amounts equal the full pull's.

Two things of a ``PartnerResult`` count or list individual lines, and are put back here:

- ``billing_lines`` of each grain row: the native lines behind it, from the weights the
  connector gives (``line_weights_sql``: how many rows each aggregated row stands for);
- ``lines``, the billing lines behind each discrepancy: the flow pulls the native rows of the
  SKU keys involved (``sku_keys_behind``), normalizes them like any delivery, and the same
  ``LINES_SQL`` as the full path joins them to the discrepancies.

No Prefect and no cloud SDK here (flows/pushdown.py orchestrates).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa

from revshare import lines as line_files
from revshare.catalog import MAPPED, UNMAPPED
from revshare.db import connect
from revshare.discrepancies import Kind
from revshare.reconcile import PartnerResult
from revshare.reconcile_sql import LINES_SQL
from revshare.sqlutil import lit


def sku_keys_behind(result: PartnerResult) -> list[str]:
    """The SKU keys of the (aggregated) billing lines behind the discrepancies, sorted."""
    con = connect()
    try:
        rows = con.execute(
            f"SELECT DISTINCT sku FROM read_parquet({lit(result.lines)}) "
            "WHERE side = 'billing' AND sku IS NOT NULL ORDER BY sku"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def _categories(con: duckdb.DuckDBPyConnection, categories: list[str]) -> None:
    con.register("_categories", pa.table({"category": pa.array(categories, pa.string())}))


def line_counts(
    grain: pa.Table,
    billing: Path,
    weights_sql: str | None,
    categories: list[str],
    by_region: bool,
) -> pa.Table:
    """``grain`` with ``billing_lines`` counting native lines, not aggregated rows.

    The same lines the grain query counts: counted charge categories, mapped lines of the
    row's model and unit (and region when the matching rules key by region), or the unmapped
    lines of its SKU; each weighted by the native rows it stands for."""
    con = connect()
    try:
        _categories(con, categories)
        con.register("_g", grain.append_column("_i", pa.array(range(grain.num_rows), pa.int64())))
        weights = weights_sql or "SELECT NULL::VARCHAR AS src_file, NULL::BIGINT AS src_row, 1 AS n"
        region = "AND b.RegionId IS NOT DISTINCT FROM g.region" if by_region else ""
        out = con.execute(f"""
          WITH w AS ({weights}),
          b AS (
            SELECT b.x_SkuKey, b.x_ModelId, b.x_Unit, b.RegionId, b.x_CatalogStatus,
              coalesce(w.n, 1) AS n
            FROM read_parquet({lit(billing)}) b
            LEFT JOIN w ON w.src_file = b.x_SourceFile AND w.src_row = b.x_SourceRow
            WHERE b.ChargeCategory IN (SELECT category FROM _categories)),
          c AS (
            SELECT g._i, sum(b.n) AS n FROM _g g JOIN b
              ON (g.type = '{Kind.UNMAPPED_SKU}' AND b.x_CatalogStatus = '{UNMAPPED}'
                  AND b.x_SkuKey = g.sku)
              OR (g.type <> '{Kind.UNMAPPED_SKU}' AND b.x_CatalogStatus = '{MAPPED}'
                  AND b.x_ModelId = g.model_id AND b.x_Unit = g.unit {region})
            GROUP BY g._i)
          SELECT g.* EXCLUDE (_i) REPLACE (
            CASE WHEN g.billing_lines IS NOT NULL THEN coalesce(c.n, g.billing_lines) END
              AS billing_lines)
          FROM _g g LEFT JOIN c USING (_i) ORDER BY g._i""").to_arrow_table()
    finally:
        con.close()
    return out.cast(grain.schema)


def lines_behind(
    result: PartnerResult,
    detail: Path | None,
    statements: Path,
    categories: list[str],
    out: Path,
) -> Path:
    """The lines behind each discrepancy into ``out``, billing side from the re-pulled native
    rows (``detail``, canonical and mapped; None when no discrepancy has billing lines)."""
    con = connect()
    try:
        if detail is None:  # nothing to re-pull: only the statement side is behind them
            sql = f"SELECT * FROM read_parquet({lit(result.lines)}) WHERE side = 'statement'"
            return line_files.write(con, sql, out)
        _categories(con, categories)
        con.register("_grain", result.grain)
        con.execute(f"CREATE VIEW billing AS SELECT * FROM read_parquet({lit(detail)})")
        con.execute(f"CREATE VIEW statements AS SELECT * FROM read_parquet({lit(statements)})")
        return line_files.write(con, LINES_SQL, out)
    finally:
        con.close()


def refine(
    result: PartnerResult,
    *,
    billing: Path,
    weights_sql: str | None,
    detail: Path | None,
    statements: Path,
    categories: list[str],
    by_region: bool,
    lines_out: Path,
) -> PartnerResult:
    """The result of a pushdown reconciliation, with line counts and the lines behind
    (written to ``lines_out``) restored."""
    grain = line_counts(result.grain, billing, weights_sql, categories, by_region)
    lines = lines_behind(result, detail, statements, categories, lines_out)
    return replace(result, grain=grain, lines=lines)
