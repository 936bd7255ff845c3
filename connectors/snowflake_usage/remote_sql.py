"""The queries of a live pull, and the Arrow types their rows are written with (no SDK here).

One SELECT per view, rows as they are (no sums in Snowflake: the money is summed in DuckDB,
exactly), only the columns the local reader uses (``helpers.REQUIRED``), in its column order.
Names come from validated settings and are quoted; the period and a pinned account go in as
bind parameters (qmark). Each query orders by the view's natural key and then by every other
column, so an unchanged view gives the same row order, the same Parquet bytes and so the same
snapshot, however Snowflake chunks the result.

Window: rows are selected by usage date (USAGE_DATE / DATE) or START_TIME in the period, in
UTC, never by when they arrived. Snowflake fills these views up to 72 hours late and may
change a day until the month closes, so a pull made before then misses or has stale rows; the
flows re-pull (``Capabilities.late_days``) and a changed view lands as a new snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa

from connectors.snowflake_usage import helpers as h
from connectors.snowflake_usage.settings import SnowflakeUsageSettings, view_parts
from revshare.periods import Period

_TS = pa.timestamp("us", tz="UTC")
_TEXT = pa.string()

#: The Parquet types of the local layout (what ``revshare.generate.snowflake`` writes), per
#: view and column. Rows are cast to these with ``safe=True``: a value that does not fit (more
#: decimals than the layout keeps) is an error, never rounded.
ARROW_TYPES: dict[str, dict[str, pa.DataType]] = {
    h.CORTEX: {
        "ACCOUNT_LOCATOR": _TEXT,
        "REGION": _TEXT,
        "START_TIME": _TS,
        "END_TIME": _TS,
        "FUNCTION_NAME": _TEXT,
        "MODEL_NAME": _TEXT,
        "WAREHOUSE_ID": pa.decimal128(38, 0),
        "TOKENS": pa.decimal128(38, 0),
        "TOKEN_CREDITS": pa.decimal128(38, 9),
    },
    h.DAILY: {
        "ORGANIZATION_NAME": _TEXT,
        "ACCOUNT_NAME": _TEXT,
        "ACCOUNT_LOCATOR": _TEXT,
        "REGION": _TEXT,
        "USAGE_DATE": pa.date32(),
        "USAGE_TYPE": _TEXT,
        "USAGE": pa.decimal128(38, 3),
        "CURRENCY": _TEXT,
        "USAGE_IN_CURRENCY": pa.decimal128(38, 2),
        "BILLING_TYPE": _TEXT,
        "RATING_TYPE": _TEXT,
        "IS_ADJUSTMENT": pa.bool_(),
    },
    h.RATES: {
        "DATE": pa.date32(),
        "ORGANIZATION_NAME": _TEXT,
        "ACCOUNT_NAME": _TEXT,
        "ACCOUNT_LOCATOR": _TEXT,
        "REGION": _TEXT,
        "USAGE_TYPE": _TEXT,
        "CURRENCY": _TEXT,
        "EFFECTIVE_RATE": pa.decimal128(38, 2),
    },
}

#: Natural key first in each ORDER BY (the rest of the columns follow).
_KEYS: dict[str, tuple[str, ...]] = {
    h.CORTEX: ("ACCOUNT_LOCATOR", "REGION", "START_TIME", "MODEL_NAME", "WAREHOUSE_ID"),
    h.DAILY: ("USAGE_DATE", "ACCOUNT_LOCATOR", "REGION", "USAGE_TYPE", "BILLING_TYPE"),
    h.RATES: ("DATE", "ACCOUNT_LOCATOR", "REGION", "USAGE_TYPE"),
}


#: Pushdown (``pushdown: true``): the Cortex file holds one row per (account, region, UTC day,
#: function, model) and says how many view rows each stands for.
LINE_COUNT = "LINE_COUNT"
GRAIN = "CORTEX_GRAIN"  # schema key of the aggregated Cortex file (folder: CORTEX's)


def schema(view: str) -> pa.Schema:
    if view == GRAIN:
        return pa.schema([*ARROW_TYPES[h.CORTEX].items(), (LINE_COUNT, pa.int64())])
    return pa.schema(list(ARROW_TYPES[view].items()))


@dataclass(frozen=True)
class ViewQuery:
    view: str  # CORTEX, DAILY or RATES: the local folder name
    source: str  # the configured database.schema.view, for messages
    sql: str
    params: tuple[object, ...]
    #: The Arrow schema key of the rows (``view``, or GRAIN for aggregated Cortex rows).
    layout: str = ""

    @property
    def schema_key(self) -> str:
        return self.layout or self.view


def _q(name: str) -> str:
    return f'"{name}"'


def _fqn(name: str) -> str:
    return ".".join(_q(p) for p in view_parts(name))


def _order(view: str) -> str:
    keys = _KEYS[view]
    rest = [c for c in ARROW_TYPES[view] if c not in keys]
    return ", ".join(_q(c) for c in (*keys, *rest))


def queries(
    s: SnowflakeUsageSettings,
    period: Period,
    *,
    grain: bool = False,
    sku_keys: tuple[str, ...] | None = None,
) -> tuple[ViewQuery, ...]:
    """The three SELECTs for ``period``.

    CORTEX_FUNCTIONS_USAGE_HISTORY is an ACCOUNT_USAGE view of the connected account and
    names no account, so its rows get CURRENT_ACCOUNT() and CURRENT_REGION() (or the pinned
    ``account_locator`` / ``region``). The two ORGANIZATION_USAGE views cover every account of
    the organization; they are cut to the same account, because the normalizer prices
    ai_services from the Cortex rows and would otherwise drop other accounts' Cortex money.
    """
    pinned = s.account_locator is not None
    acct_sql = "CAST(? AS VARCHAR)" if pinned else "CURRENT_ACCOUNT()"
    region_sql = "CAST(? AS VARCHAR)" if pinned else "CURRENT_REGION()"
    acct_params: tuple[object, ...] = (s.account_locator, s.region) if pinned else ()
    start: datetime = period.start
    end: datetime = period.end
    first: date = period.first_day
    after: date = period.end.date()

    # TIMESTAMP_TZ bindings: the instants are UTC whatever the session time zone.
    cortex_params = (*acct_params, ("TIMESTAMP_TZ", start), ("TIMESTAMP_TZ", end))
    keys: tuple[str, ...] = ()
    if grain:
        cortex = _cortex_grain(s, acct_sql, region_sql)
        layout = GRAIN
    else:
        cortex_cols = [c for c in ARROW_TYPES[h.CORTEX] if c not in ("ACCOUNT_LOCATOR", "REGION")]
        where = ""
        if sku_keys is not None:  # the lines behind discrepancies: only these SKU keys
            keys = tuple(sku_keys) or ("",)
            where = f" AND {SKU_KEY} IN ({', '.join('?' * len(keys))})"
        cortex = (
            f'SELECT {acct_sql} AS "ACCOUNT_LOCATOR", {region_sql} AS "REGION", '
            f"{', '.join(_q(c) for c in cortex_cols)} FROM {_fqn(s.cortex_view)} "
            f'WHERE "START_TIME" >= ? AND "START_TIME" < ?{where} ORDER BY {_order(h.CORTEX)}'
        )
        layout = ""

    def org_view(view: str, name: str, day_col: str, only: tuple[str, ...] = ()) -> ViewQuery:
        where = f' AND "USAGE_TYPE" IN ({", ".join("?" * len(only))})' if only else ""
        sql = (
            f"SELECT {', '.join(_q(c) for c in ARROW_TYPES[view])} FROM {_fqn(name)} "
            f"WHERE {_q(day_col)} >= ? AND {_q(day_col)} < ? "
            f'AND "ACCOUNT_LOCATOR" = {acct_sql} AND "REGION" = {region_sql}{where} '
            f"ORDER BY {_order(view)}"
        )
        return ViewQuery(view, name, sql, (first, after, *acct_params, *only))

    return (
        ViewQuery(h.CORTEX, s.cortex_view, cortex, (*cortex_params, *keys), layout),
        # The daily view is already one row per day and usage type: never aggregated. For
        # the lines behind, only the keys asked for (its SKU key is the usage type).
        org_view(h.DAILY, s.usage_view, "USAGE_DATE", keys),
        # Every rate of the period: the Cortex lines are priced with them.
        org_view(h.RATES, s.rate_view, "DATE"),
    )


#: The normalizer's SKU key of a Cortex row (``helpers.cortex_exprs``: x_SkuKey).
SKU_KEY = """coalesce(nullif("MODEL_NAME", ''), "FUNCTION_NAME")"""


def _cortex_grain(s: SnowflakeUsageSettings, acct_sql: str, region_sql: str) -> str:
    """Cortex usage summed per (UTC day, function, model), in Snowflake.

    Why this grain: everything the reconciliation reads of a Cortex line is kept exactly.
    The SKU key (model, else function), the UTC day (the rate sheet's price, a daily FX rate
    and the period-shift tail are all per day; the session runs in UTC) and the sums of TOKENS
    and TOKEN_CREDITS, which are NUMBERs, so Snowflake adds them exactly, and a day's credits
    times the day's rate equals the sum of the lines' costs. START_TIME is the day's first
    line, so it falls on the same day. Lost: the hour and the warehouse (ResourceId)."""
    return (
        f'SELECT {acct_sql} AS "ACCOUNT_LOCATOR", {region_sql} AS "REGION", '
        'MIN("START_TIME") AS "START_TIME", MAX("END_TIME") AS "END_TIME", '
        '"FUNCTION_NAME", "MODEL_NAME", CAST(NULL AS NUMBER(38,0)) AS "WAREHOUSE_ID", '
        # Cast the sums: some engines (fakesnow) widen a NUMBER sum to a float.
        'CAST(SUM("TOKENS") AS NUMBER(38,0)) AS "TOKENS", '
        'CAST(SUM("TOKEN_CREDITS") AS NUMBER(38,9)) AS "TOKEN_CREDITS", '
        f'COUNT(*) AS "{LINE_COUNT}" '
        f"FROM {_fqn(s.cortex_view)} "
        'WHERE "START_TIME" >= ? AND "START_TIME" < ? '
        'GROUP BY TO_DATE("START_TIME"), "FUNCTION_NAME", "MODEL_NAME" '
        'ORDER BY TO_DATE("START_TIME"), "FUNCTION_NAME", "MODEL_NAME"'
    )
