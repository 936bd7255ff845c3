"""SQL for OCI cost reports (the CSV files Oracle writes to ``reports/cost-csv/``).

Every column is read as text, so money never passes through a double: Oracle writes costs
like ``2.323760000E-9``, which DuckDB's DECIMAL cast reads exactly (rounded half away from
zero at the 12th place, the schema's one rounding rule). Headers are matched by name.
"""

from __future__ import annotations

from pathlib import Path

from revshare.schema import MONEY_SQL
from revshare.sqlutil import lit

#: Data files we read under the folder.
SUFFIXES = (".csv.gz", ".csv")

#: Columns without which a row cannot become a billing line.
REQUIRED: tuple[str, ...] = (
    "lineItem/referenceNo",
    "lineItem/tenantId",
    "lineItem/intervalUsageStart",
    "lineItem/intervalUsageEnd",
    "product/service",
    "cost/currencyCode",
    "cost/myCost",
)
#: Columns that must parse as exact decimals where filled.
DECIMALS: tuple[str, ...] = (
    "usage/billedQuantity",
    "usage/billedQuantityOverage",
    "cost/unitPrice",
    "cost/unitPriceOverage",
    "cost/myCost",
    "cost/myCostOverage",
)
TIMES: tuple[str, ...] = ("lineItem/intervalUsageStart", "lineItem/intervalUsageEnd")
_ZONE = r"(Z|[+-]\d\d:?\d\d)$"


def is_data(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def q(name: str) -> str:
    """Quote a header as an identifier (headers come from files: quote, never trust)."""
    return '"' + name.replace('"', '""') + '"'


def scan_sql(path: Path) -> str:
    """A FROM item over one report: every column as text, then the 1-based data row number
    (WITH ORDINALITY numbers rows in file order; the header is not a row)."""
    return (
        f"(SELECT * FROM read_csv({lit(path)}, header = true, all_varchar = true, "
        "nullstr = '', strict_mode = true, hive_partitioning = false) WITH ORDINALITY)"
    )


def time_expr(col: str, cast: str = "CAST") -> str:
    """An instant from Oracle's ISO text. Oracle writes ``2023-11-13T10:00Z`` (no seconds),
    which DuckDB's parser refuses, so seconds are added first; text without a zone is UTC."""
    c = q(col)
    minutes_only = r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d)(Z|[+-]\d\d:?\d\d)?$"
    fixed = f"regexp_replace({c}, {lit(minutes_only)}, '\\1:00\\2')"
    return (
        f"(CASE WHEN regexp_matches({c}, {lit(_ZONE)}) "
        f"THEN {cast}({fixed} AS TIMESTAMPTZ) "
        f"ELSE timezone('UTC', {cast}({fixed} AS TIMESTAMP)) END)"
    )


def decimal_expr(col: str, cast: str = "CAST") -> str:
    return f"{cast}({q(col)} AS {MONEY_SQL})"


def tags_expr(columns: list[str]) -> str:
    """FOCUS Tags as a JSON object of the ``tags/*`` columns that hold a value in the row."""
    tags = [c for c in columns if c.startswith("tags/")]
    if not tags:
        return "NULL"
    items = ", ".join(f"{{'k': {lit(c[5:])}, 'v': {q(c)}}}" for c in tags)
    return (
        f"CAST(to_json(map_from_entries(list_filter([{items}], x -> x.v IS NOT NULL))) AS VARCHAR)"
    )


def check_sql(columns: list[str], scan: str, row: str) -> str:
    """The first bad row of a report as (row, column, value, problem), or nothing."""
    cases: list[tuple[str, str, str]] = []
    for c in REQUIRED:
        cases.append((f"{q(c)} IS NULL OR trim({q(c)}) = ''", c, "is empty"))
    for c in DECIMALS:
        if c in columns:
            cases.append(
                (f"{q(c)} IS NOT NULL AND {decimal_expr(c, 'TRY_CAST')} IS NULL", c,
                 "is not a decimal number")
            )  # fmt: skip
    for c in TIMES:
        cases.append((f"{time_expr(c, 'TRY_CAST')} IS NULL", c, "is not a date/time"))
    if "lineItem/isCorrection" in columns:
        c = "lineItem/isCorrection"
        cases.append(
            (f"{q(c)} IS NOT NULL AND lower({q(c)}) NOT IN ('true', 'false')", c,
             "is not true or false")
        )  # fmt: skip
    when = " ".join(f"WHEN {cond} THEN {lit(col)}" for cond, col, _ in cases)
    val = " ".join(f"WHEN {cond} THEN {q(col)}" for cond, col, _ in cases)
    why = " ".join(f"WHEN {cond} THEN {lit(w)}" for cond, _, w in cases)
    return (
        f"SELECT r, c, v, w FROM (SELECT {row} AS r, CASE {when} END AS c, CASE {val} END AS v, "
        f"CASE {why} END AS w FROM {scan} AS src) WHERE c IS NOT NULL ORDER BY r LIMIT 1"
    )


def canonical_exprs(columns: list[str], sku_key_column: str) -> dict[str, str]:
    """Canonical column -> SQL over one report (names as Oracle writes them)."""

    def opt(col: str, expr: str | None = None) -> str:
        return (expr or q(col)) if col in columns else "NULL"

    correction = (
        f"CASE WHEN lower({q('lineItem/isCorrection')}) = 'true' THEN 'Correction' END"
        if "lineItem/isCorrection" in columns
        else "NULL"
    )
    sku_parts = [f"NULLIF(trim({q(c)}), '')" for c in (sku_key_column, "cost/productSku")
                 if c in columns]  # fmt: skip
    return {
        "AvailabilityZone": opt("product/availabilityDomain"),
        "BilledCost": decimal_expr("cost/myCost"),
        "BillingAccountId": q("lineItem/tenantId"),
        "BillingCurrency": f"upper(trim({q('cost/currencyCode')}))",
        "ChargeCategory": "'Usage'",
        "ChargeClass": correction,
        "ChargeDescription": opt("product/Description"),
        "ChargeFrequency": "'Usage-Based'",
        "ChargePeriodStart": time_expr("lineItem/intervalUsageStart"),
        "ChargePeriodEnd": time_expr("lineItem/intervalUsageEnd"),
        "ConsumedQuantity": opt("usage/billedQuantity", decimal_expr("usage/billedQuantity")),
        "ConsumedUnit": opt("cost/skuUnitDescription"),
        "ContractedUnitPrice": opt("cost/unitPrice", decimal_expr("cost/unitPrice")),
        "EffectiveCost": decimal_expr("cost/myCost"),
        "InvoiceIssuerName": "'Oracle'",
        "PricingCurrency": f"upper(trim({q('cost/currencyCode')}))",
        "PricingQuantity": opt("usage/billedQuantity", decimal_expr("usage/billedQuantity")),
        "PricingUnit": opt("cost/billingUnitReadable"),
        "ProviderName": "'Oracle'",
        "PublisherName": "'Oracle'",
        "RegionId": opt("product/region"),
        "ResourceId": opt("product/resourceId"),
        "ServiceName": q("product/service"),
        "SkuId": opt("cost/productSku"),
        "SubAccountId": opt("product/compartmentId"),
        "SubAccountName": opt("product/compartmentName"),
        "SubAccountType": "'Compartment'",
        "Tags": tags_expr(columns),
        "x_SkuKey": f"COALESCE({', '.join([*sku_parts, q('product/service')])})",
        "x_NativeLineId": q("lineItem/referenceNo"),
    }
