"""SQL building for the Snowflake usage views (Parquet unloads).

Each view's files are read one by one (so every row keeps its file and 1-based row number) and
stacked with UNION ALL; only the columns we use are selected, so extra or reordered columns in
an unload do not matter. All time handling goes through ``timezone('UTC', ...)`` so the result
does not depend on the session time zone of whoever runs the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from revshare.periods import Period
from revshare.schema import billing_select_sql
from revshare.sqlutil import exact_product, lit, parquet_scan

CORTEX = "CORTEX_FUNCTIONS_USAGE_HISTORY"
DAILY = "USAGE_IN_CURRENCY_DAILY"
RATES = "RATE_SHEET_DAILY"
MANIFEST = "unload_manifest.json"
#: The usage type under which Snowflake bills Cortex AI functions.
AI_USAGE_TYPE = "ai_services"

VIEWS = (CORTEX, DAILY, RATES)
_FILE = re.compile(rf"^(?:.*/)?({CORTEX}|{DAILY}|{RATES})/[^/]+\.parquet$")

#: Columns each view must have (more may be present and are ignored).
REQUIRED: Mapping[str, tuple[str, ...]] = {
    # ACCOUNT_LOCATOR and REGION: added by the unload query (CURRENT_ACCOUNT(), CURRENT_REGION()).
    CORTEX: (
        "ACCOUNT_LOCATOR",
        "REGION",
        "START_TIME",
        "END_TIME",
        "FUNCTION_NAME",
        "MODEL_NAME",
        "WAREHOUSE_ID",
        "TOKENS",
        "TOKEN_CREDITS",
    ),
    DAILY: (
        "ORGANIZATION_NAME",
        "ACCOUNT_NAME",
        "ACCOUNT_LOCATOR",
        "REGION",
        "USAGE_DATE",
        "USAGE_TYPE",
        "USAGE",
        "CURRENCY",
        "USAGE_IN_CURRENCY",
        "BILLING_TYPE",
        "RATING_TYPE",
        "IS_ADJUSTMENT",
    ),
    RATES: (
        "DATE",
        "ORGANIZATION_NAME",
        "ACCOUNT_NAME",
        "ACCOUNT_LOCATOR",
        "REGION",
        "USAGE_TYPE",
        "CURRENCY",
        "EFFECTIVE_RATE",
    ),
}


#: Columns whose Parquet type must be temporal: (view, column) -> accepted DuckDB type prefix.
TEMPORAL: Mapping[tuple[str, str], str] = {
    (CORTEX, "START_TIME"): "TIMESTAMP",
    (CORTEX, "END_TIME"): "TIMESTAMP",
    (DAILY, "USAGE_DATE"): "DATE",
    (RATES, "DATE"): "DATE",
}


@dataclass(frozen=True)
class ViewFile:
    view: str  # CORTEX, DAILY or RATES
    relpath: str
    path: str


def classify(relpath: str) -> str | None:
    """The view a file of the unload layout belongs to, None for anything else."""
    m = _FILE.match(relpath)
    return m.group(1) if m else None


def _utc(col: str, sql_type: str) -> str:
    """A naive UTC TIMESTAMP from a Parquet timestamp: TIMESTAMP_LTZ unloads carry UTC
    instants; a naive (NTZ) column is taken as UTC, as Snowflake's usage views are."""
    return f"timezone('UTC', {col})" if "TIME ZONE" in sql_type else f"CAST({col} AS TIMESTAMP)"


def file_select(files: Sequence[ViewFile], types: Mapping[str, str]) -> str:
    """Rows of files of one view that share their columns and types (one scan,
    ``parquet_scan``), with lineage (file, 1-based row) and the columns we use."""
    cols = [f'"{c}"' for c in REQUIRED[files[0].view]]
    extra = ""
    if files[0].view == CORTEX:
        extra = (
            f", {_utc('START_TIME', types['START_TIME'])} AS start_utc"
            f", {_utc('END_TIME', types['END_TIME'])} AS end_utc"
        )
    scan = parquet_scan([(f.relpath, f.path) for f in files])
    return (
        f"SELECT _src_file AS src_file, CAST(file_row_number + 1 AS BIGINT) AS src_row, "
        f"{', '.join(cols)}{extra} FROM {scan}"
    )


def ctes(selects: Mapping[str, list[str]], period: Period) -> str:
    """WITH-clause bodies: the three views, and the period's Cortex rows priced."""
    start, end = period.start.strftime("%Y-%m-%d"), period.end.strftime("%Y-%m-%d")
    return f"""
cortex AS ({" UNION ALL ".join(selects[CORTEX])}),
daily AS ({" UNION ALL ".join(selects[DAILY])}),
rates AS ({" UNION ALL ".join(selects[RATES])}),
priced AS (
  SELECT c.*, r.EFFECTIVE_RATE AS rate, r.CURRENCY AS rate_currency,
    r.ORGANIZATION_NAME AS organization, r.ACCOUNT_NAME AS account_name,
    CAST(c.start_utc AS DATE) AS usage_date
  FROM cortex c
  LEFT JOIN rates r ON r.ACCOUNT_LOCATOR = c.ACCOUNT_LOCATOR AND r.REGION = c.REGION
    AND r.DATE = CAST(c.start_utc AS DATE) AND r.USAGE_TYPE = '{AI_USAGE_TYPE}'
  WHERE c.start_utc >= TIMESTAMP '{start}' AND c.start_utc < TIMESTAMP '{end}'
),
daily_in AS (
  SELECT * FROM daily
  WHERE USAGE_DATE >= DATE '{start}' AND USAGE_DATE < DATE '{end}'
    -- Cortex money is already priced row by row above: the consumption row of ai_services
    -- is the same money summed per day, so only its adjustments are taken from here.
    AND NOT (USAGE_TYPE = '{AI_USAGE_TYPE}' AND NOT coalesce(IS_ADJUSTMENT, false))
)"""


#: Checks run before the SQL is handed out: (what is wrong, column, query yielding
#: src_file, src_row, detail in file/row order).
CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "START_TIME is null",
        "START_TIME",
        "SELECT src_file, src_row, '' FROM cortex WHERE START_TIME IS NULL",
    ),
    (
        "TOKENS is null or not a number",
        "TOKENS",
        "SELECT src_file, src_row, '' FROM priced WHERE TRY_CAST(TOKENS AS DECIMAL(38,12)) IS NULL",
    ),
    (
        "TOKEN_CREDITS is null or not a number",
        "TOKEN_CREDITS",
        "SELECT src_file, src_row, '' FROM priced "
        "WHERE TRY_CAST(TOKEN_CREDITS AS DECIMAL(38,12)) IS NULL",
    ),
    (
        "EFFECTIVE_RATE is not a number",
        "EFFECTIVE_RATE",
        "SELECT src_file, src_row, '' FROM rates "
        "WHERE EFFECTIVE_RATE IS NOT NULL AND TRY_CAST(EFFECTIVE_RATE AS DECIMAL(18,10)) IS NULL",
    ),
    (
        "several rates for one date, account and usage type",
        "EFFECTIVE_RATE",
        "SELECT src_file, src_row, DATE::VARCHAR || ' ' || USAGE_TYPE FROM ("
        "SELECT *, count(*) OVER (PARTITION BY ACCOUNT_LOCATOR, REGION, DATE, USAGE_TYPE) AS n "
        "FROM rates) WHERE n > 1",
    ),
    (
        f"no {RATES} rate (EFFECTIVE_RATE and CURRENCY) for usage type {AI_USAGE_TYPE} on this "
        "row's date, account and region",
        "START_TIME",
        "SELECT src_file, src_row, usage_date::VARCHAR || ' account ' || ACCOUNT_LOCATOR "
        "|| ' region ' || REGION "
        "FROM priced WHERE rate IS NULL OR rate_currency IS NULL",
    ),
    (
        "USAGE_DATE is null",
        "USAGE_DATE",
        "SELECT src_file, src_row, '' FROM daily WHERE USAGE_DATE IS NULL",
    ),
    (
        # A damaged or hand-made unload can hold a date no timestamp can carry (year 323567):
        # name it here rather than fail the whole query when the period's bounds are applied.
        "USAGE_DATE is out of range",
        "USAGE_DATE",
        "SELECT src_file, src_row, CAST(USAGE_DATE AS VARCHAR) FROM daily "
        "WHERE TRY_CAST(USAGE_DATE AS TIMESTAMP) IS NULL AND USAGE_DATE IS NOT NULL",
    ),
    (
        "USAGE_IN_CURRENCY is null or not a number",
        "USAGE_IN_CURRENCY",
        "SELECT src_file, src_row, '' FROM daily_in "
        "WHERE TRY_CAST(USAGE_IN_CURRENCY AS DECIMAL(38,12)) IS NULL",
    ),
    (
        "USAGE is not a number",
        "USAGE",
        "SELECT src_file, src_row, '' FROM daily_in "
        "WHERE USAGE IS NOT NULL AND TRY_CAST(USAGE AS DECIMAL(38,12)) IS NULL",
    ),
    (
        "CURRENCY is null",
        "CURRENCY",
        "SELECT src_file, src_row, '' FROM daily_in WHERE CURRENCY IS NULL",
    ),
    (
        "USAGE_TYPE is null",
        "USAGE_TYPE",
        "SELECT src_file, src_row, '' FROM daily_in WHERE USAGE_TYPE IS NULL OR USAGE_TYPE = ''",
    ),
)


def _common(period: Period, ctx_partner: str, snapshot_id: str) -> dict[str, str]:
    bps = lit(period.start.strftime("%Y-%m-%d 00:00:00+00"))
    bpe = lit(period.end.strftime("%Y-%m-%d 00:00:00+00"))
    return {
        "BillingPeriodStart": f"CAST({bps} AS TIMESTAMPTZ)",
        "BillingPeriodEnd": f"CAST({bpe} AS TIMESTAMPTZ)",
        "ProviderName": "'Snowflake'",
        "PublisherName": "'Snowflake'",
        "InvoiceIssuerName": "'Snowflake'",
        "ChargeFrequency": "'Usage-Based'",
        "x_PartnerId": lit(ctx_partner),
        "x_SnapshotId": lit(snapshot_id),
        "x_SourceFile": "src_file",
        "x_SourceRow": "src_row",
        "x_NativeLineId": "src_file || ':' || src_row",
    }


def cortex_exprs(period: Period, partner: str, snapshot_id: str) -> dict[str, str]:
    # Credits have 9 places (NUMBER(38,9)) and rate sheets 2.
    cost = exact_product("CAST(TOKEN_CREDITS AS DECIMAL(38,12))", "rate", b_places=3)
    return {
        **_common(period, partner, snapshot_id),
        "BilledCost": cost,
        "EffectiveCost": cost,
        "BillingAccountId": "organization",
        "BillingAccountName": "organization",
        "SubAccountId": "ACCOUNT_LOCATOR",
        "SubAccountName": "account_name",
        "BillingCurrency": "rate_currency",
        "ChargeCategory": "'Usage'",
        "ChargeDescription": "FUNCTION_NAME || ' ' || coalesce(MODEL_NAME, '')",
        "ChargePeriodStart": "timezone('UTC', start_utc)",
        "ChargePeriodEnd": "timezone('UTC', coalesce(end_utc, start_utc + INTERVAL 1 HOUR))",
        "ConsumedQuantity": "TOKENS",
        "ConsumedUnit": "'Tokens'",
        "PricingQuantity": "TOKENS",
        "PricingUnit": "'Tokens'",
        "RegionId": "REGION",
        "RegionName": "REGION",
        "ResourceId": "CAST(WAREHOUSE_ID AS VARCHAR)",
        "ResourceType": "'Warehouse'",
        "ServiceName": "'Cortex AI'",
        "ServiceCategory": "'AI and Machine Learning'",
        "ServiceSubcategory": "'Generative AI'",
        "SkuMeter": "FUNCTION_NAME",
        # Functions called without a model have an empty MODEL_NAME: key them by function.
        "x_SkuKey": "coalesce(nullif(MODEL_NAME, ''), FUNCTION_NAME)",
    }


def daily_exprs(period: Period, partner: str, snapshot_id: str) -> dict[str, str]:
    day = "timezone('UTC', CAST(USAGE_DATE AS TIMESTAMP))"
    return {
        **_common(period, partner, snapshot_id),
        "BilledCost": "USAGE_IN_CURRENCY",
        "EffectiveCost": "USAGE_IN_CURRENCY",
        "BillingAccountId": "ORGANIZATION_NAME",
        "BillingAccountName": "ORGANIZATION_NAME",
        "SubAccountId": "ACCOUNT_LOCATOR",
        "SubAccountName": "ACCOUNT_NAME",
        "BillingCurrency": "CURRENCY",
        "ChargeCategory": (
            "CASE WHEN NOT coalesce(IS_ADJUSTMENT, false) THEN 'Usage' "
            "WHEN USAGE_IN_CURRENCY < 0 THEN 'Credit' ELSE 'Adjustment' END"
        ),
        "ChargeDescription": "USAGE_TYPE || ' ' || coalesce(BILLING_TYPE, '')",
        "ChargePeriodStart": day,
        "ChargePeriodEnd": f"{day} + INTERVAL 1 DAY",
        "ConsumedQuantity": "USAGE",
        "ConsumedUnit": _unit(),
        "PricingQuantity": "USAGE",
        "PricingUnit": _unit(),
        "RegionId": "REGION",
        "RegionName": "REGION",
        "ServiceName": "USAGE_TYPE",
        "ServiceCategory": (
            f"CASE WHEN USAGE_TYPE = '{AI_USAGE_TYPE}' THEN 'AI and Machine Learning' "
            "WHEN RATING_TYPE = 'storage' THEN 'Storage' "
            "WHEN RATING_TYPE = 'compute' THEN 'Compute' ELSE 'Other' END"
        ),
        "x_SkuKey": "USAGE_TYPE",
    }


def _unit() -> str:
    # USAGE is in credits for compute-rated usage and in TB for storage (Snowflake's units).
    return (
        "CASE RATING_TYPE WHEN 'compute' THEN 'Credits' WHEN 'storage' THEN 'TB' ELSE 'Units' END"
    )


def accounting_sql(selects: Mapping[str, list[str]], period: Period) -> str:
    """Rows of the two line-bearing views (the rate sheet is a price list, not lines), with
    the reason ``ctes`` leaves a row out: another period, or the daily ai_services total that
    the Cortex rows already price one by one."""
    start, end = period.start.strftime("%Y-%m-%d"), period.end.strftime("%Y-%m-%d")
    return f"""WITH {ctes(selects, period)}
SELECT src_file, src_row, CASE WHEN NOT coalesce(start_utc >= TIMESTAMP '{start}'
  AND start_utc < TIMESTAMP '{end}', false) THEN 'other period' END AS reason FROM cortex
UNION ALL
SELECT src_file, src_row, CASE WHEN NOT coalesce(USAGE_DATE >= DATE '{start}'
  AND USAGE_DATE < DATE '{end}', false) THEN 'other period'
  WHEN coalesce(USAGE_TYPE = '{AI_USAGE_TYPE}' AND NOT coalesce(IS_ADJUSTMENT, false), false)
  THEN 'ai_services daily total (priced from the Cortex rows)' END FROM daily"""


def normalize_sql(
    selects: Mapping[str, list[str]], period: Period, partner: str, snapshot_id: str
) -> str:
    cortex = billing_select_sql(cortex_exprs(period, partner, snapshot_id))
    daily = billing_select_sql(daily_exprs(period, partner, snapshot_id))
    return (
        f"WITH {ctes(selects, period)}\n"
        f"SELECT {cortex}\nFROM priced\n"
        f"UNION ALL\n"
        f"SELECT {daily}\nFROM daily_in"
    )
