"""SQL for the usage-log format (connectors/usage_log/README.md).

Read as text first, then converted with TRY_CAST, so a value that does not parse is reported
with its file, row and column instead of being guessed.
"""

from __future__ import annotations

from revshare.schema import billing_select_sql
from revshare.sqlutil import lit

REQUIRED = ("request_id", "timestamp", "model_id", "unit", "tokens")
#: Columns that must parse, with the SQL type they must parse as.
TYPED = {"timestamp": "TIMESTAMPTZ", "tokens": "DECIMAL(38,12)", "cost": "DECIMAL(38,12)"}


def raw_sql(path: str, json: bool) -> str:
    """Rows as text with their 1-based data row number (file order, as for statements)."""
    scan = (
        f"read_json({lit(path)}, format='newline_delimited', columns="
        + "{"
        + ", ".join(f"'{c}': 'VARCHAR'" for c in (*REQUIRED, "cost", "currency", "region"))
        + "})"
        if json
        else f"read_csv({lit(path)}, all_varchar=true, header=true, strict_mode=true)"
    )
    return f"SELECT *, CAST(row_number() OVER () AS BIGINT) AS _row FROM {scan}"


def in_period(start: str, end: str) -> str:
    ts = "TRY_CAST(timestamp AS TIMESTAMPTZ)"
    return f"{ts} >= {start} AND {ts} < {end}"


def canonical_sql(raw: str, rel: str, ctx_snapshot: str, partner: str, bounds: tuple[str, str],
                  currency: str, has: set[str]) -> str:  # fmt: skip
    """Canonical billing lines: the model and unit are named by the log itself, so the lines
    are mapped already (no catalog); cost is what the licensor's own account was charged."""
    start, end = bounds
    cost = "coalesce(nullif(trim(cost), ''), '0')" if "cost" in has else "'0'"
    ccy = f"coalesce(nullif(upper(trim(currency)), ''), {lit(currency)})" if "currency" in has \
        else lit(currency)  # fmt: skip
    exprs = {
        "BilledCost": cost, "EffectiveCost": cost, "ListCost": cost, "ContractedCost": cost,
        "BillingAccountId": lit(f"{partner}-probe"), "BillingCurrency": ccy,
        "BillingPeriodStart": start, "BillingPeriodEnd": end, "ChargeCategory": "'Usage'",
        "ChargePeriodStart": "CAST(timestamp AS TIMESTAMPTZ)",
        "ChargePeriodEnd": "CAST(timestamp AS TIMESTAMPTZ)",
        "ChargeDescription": "'probe usage'", "ProviderName": lit(partner),
        "ServiceName": "'Model inference (probe)'", "ConsumedQuantity": "tokens",
        "ConsumedUnit": "'Tokens'", "RegionId": "region" if "region" in has else "NULL",
        "x_PartnerId": lit(partner), "x_SkuKey": "model_id || '/' || unit",
        "x_ModelId": "trim(model_id)", "x_Unit": "trim(unit)", "x_Tokens": "tokens",
        "x_CatalogStatus": "'mapped'", "x_NativeLineId": "request_id",
        "x_SnapshotId": lit(ctx_snapshot), "x_SourceFile": lit(rel), "x_SourceRow": "_row",
    }  # fmt: skip
    return f"SELECT {billing_select_sql(exprs)} FROM ({raw}) WHERE {in_period(start, end)}"
