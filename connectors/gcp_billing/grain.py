"""Pushdown (``pushdown: true``): the invoice month summed in BigQuery, laid out as an export.

One query (no SDK here) groups the month's rows by every field the normalization reads, the
UTC day of ``usage_start_time`` and the row's credit names, and sums the money exactly. Its
result is flat, one kind of row per line: ``kind = 'row'`` (the group's sums and
``line_count``, the export rows behind it) and ``kind = 'credit'`` (the group's credits summed
per name). One query, not two, so both come from one snapshot of a table Google appends to.
``nest_sql`` then rebuilds, in DuckDB, the export's nested records from those rows, so the
staged files have the full pull's layout and one normalization reads both.

Why this grain: the reconciliation groups, prices and converts by SKU key, region, currency
and UTC day, and its figures are sums; everything else the normalization maps (account,
project, service, units, charge category, seller) is kept as it is. Lost: the hour, the
labels (``Tags``), the credit and adjustment ids; the reconciliation reads none of them.
The credit names are a key so that each aggregated credit line stands for exactly
``line_count`` export credit entries (every row of the group carries that credit once), which
keeps the native line counts right for a contract that counts credits. A row carrying two
credits of one name is the exception: its group's line count of that credit is then low.

Exact money: the export's money columns are FLOAT64, and a FLOAT64 ``SUM`` is not exact. Each
value is turned into the text the full path casts (``CAST(x AS STRING)``), parsed as a
BIGNUMERIC (38 decimal places, exact), rounded half away from zero to the canonical 12
places as the full path's DECIMAL(38,12) cast does, and summed as BIGNUMERIC (exact). The sum
comes back as text. This equals the full path only if BigQuery's FLOAT64 text is the text the
full path reads, the shortest one that round-trips the double (DuckDB's JSON writer). Google
documents it as "an approximate string representation". If it prints 17 significant digits
where 16 would do, the two texts differ only in the last digit, and round to the same 12 places
unless the value lies within a double's spacing of a halfway point (a 13th decimal of 5).
The emulator the tests use is DuckDB underneath, whose text is the shortest one, and it keeps
only 9 to 10 decimal places in a BIGNUMERIC, so its run proves the layout, the grain and the
plumbing, not BigQuery's text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.gcp_billing.query import ExportQuery, Param

#: The column that says how many export rows an aggregated row stands for (ours, not Google's).
LINE_COUNT = "LINE_COUNT"

#: Group keys: flat result column -> the export field it is (dotted inside RECORDs).
KEYS: Mapping[str, str] = {
    "billing_account_id": "billing_account_id",
    "service_id": "service.id",
    "service_description": "service.description",
    "sku_id": "sku.id",
    "sku_description": "sku.description",
    "project_id": "project.id",
    "project_name": "project.name",
    "location_location": "location.location",
    "location_region": "location.region",
    "location_zone": "location.zone",
    "currency": "currency",
    "invoice_month": "invoice.month",
    "cost_type": "cost_type",
    "adjustment_description": "adjustment_info.description",
    "usage_unit": "usage.unit",
    "usage_pricing_unit": "usage.pricing_unit",
    "transaction_type": "transaction_type",
    "seller_name": "seller_name",
}
#: Keys that are not export fields: the UTC day, and the row's credit names in order.
_DAY, _CREDITS = "usage_day", "credit_names"
#: FLOAT64 money and quantities summed exactly: flat column -> export field.
SUMS: Mapping[str, str] = {
    "cost": "cost",
    "cost_at_list": "cost_at_list",
    "usage_amount": "usage.amount",
    "usage_amount_in_pricing_units": "usage.amount_in_pricing_units",
}


def _exact(x: str) -> str:
    """FLOAT64 -> its text -> BIGNUMERIC, rounded to the canonical 12 places (see above)."""
    return f"ROUND(PARSE_BIGNUMERIC(CAST({x} AS STRING)), 12)"


def _sum(x: str) -> str:
    return f"CAST(SUM({_exact(x)}) AS STRING)"


def grain_query(ref: str, where: Sequence[str], params: Sequence[Param]) -> ExportQuery:
    """The month (``where``: ``query.month_filter``) summed per group, rows and credits."""
    keys = [*KEYS, _DAY, _CREDITS]
    per_row = ",\n    ".join(
        [f"{field} AS {col}" for col, field in KEYS.items()]
        + [
            f'DATE(usage_start_time, "UTC") AS {_DAY}',
            # Names joined in order, so the same credits give the same key in any order.
            f"ARRAY_TO_STRING(ARRAY(SELECT c.name FROM UNNEST(credits) AS c "
            f"ORDER BY c.name), '\\n') AS {_CREDITS}",
            "usage_start_time, usage_end_time, export_time, credits",
        ]
        + [f"{field} AS {col}" for col, field in SUMS.items()]
    )
    key_list = ", ".join(keys)
    null_str = "CAST(NULL AS STRING)"
    rows = ",\n    ".join(
        [
            "'row' AS kind",
            "MIN(usage_start_time) AS usage_start_time",
            "MAX(usage_end_time) AS usage_end_time",
            "MAX(export_time) AS export_time",
        ]
        + [f"{_sum(col)} AS {col}" for col in SUMS]
        + ["COUNT(*) AS line_count"]
        + [f"{null_str} AS credit_{c}" for c in ("name", "full_name", "type", "amount")]
    )
    null_ts = "CAST(NULL AS TIMESTAMP)"
    credits = ",\n    ".join(
        [
            "'credit' AS kind",
            f"{null_ts} AS usage_start_time",
            f"{null_ts} AS usage_end_time",
            f"{null_ts} AS export_time",
        ]
        + [f"{null_str} AS {col}" for col in SUMS]
        + [
            "CAST(NULL AS INT64) AS line_count",
            "c.name AS credit_name",
            "MIN(c.full_name) AS credit_full_name",
            "MIN(c.type) AS credit_type",
            f"{_sum('c.amount')} AS credit_amount",
        ]
    )
    sql = f"""WITH r AS (
  SELECT
    {per_row}
  FROM {ref}
  WHERE {" AND ".join(where)}
)
SELECT {key_list},
    {rows}
FROM r
GROUP BY {key_list}
UNION ALL
SELECT {key_list},
    {credits}
FROM r, UNNEST(r.credits) AS c
GROUP BY {key_list}, c.name"""
    return ExportQuery(sql, tuple(params))


def _join_on(a: str, b: str) -> str:
    return " AND ".join(f"{a}.{k} IS NOT DISTINCT FROM {b}.{k}" for k in (*KEYS, _DAY, _CREDITS))


def nest_sql(spool: str) -> str:
    """DuckDB: the spooled grain result (``spool``, a SELECT) as export records in the
    export's field order, money as exact JSON numbers, ``LINE_COUNT`` last."""
    keys = ", ".join((*KEYS, _DAY, _CREDITS))

    def num(col: str, table: str = "g") -> str:
        # DECIMAL, not JSON: DuckDB's JSON writer prints a DECIMAL's digits as they are, but
        # re-prints a JSON number through a double. The sums have 12 places: the cast is exact.
        return f"CAST({table}.{col} AS DECIMAL(38,12))"

    return f"""WITH g AS (SELECT * FROM ({spool}) WHERE kind = 'row'),
c AS (
  SELECT {keys},
    list({{'name': credit_name, 'amount': {num("credit_amount", "x")},
           'full_name': credit_full_name, 'id': NULL::VARCHAR, 'type': credit_type}}
         ORDER BY credit_name) AS credits
  FROM ({spool}) x WHERE kind = 'credit' GROUP BY ALL
)
SELECT
  g.billing_account_id,
  {{'id': g.service_id, 'description': g.service_description}} AS service,
  {{'id': g.sku_id, 'description': g.sku_description}} AS sku,
  g.usage_start_time, g.usage_end_time,
  {{'id': g.project_id, 'name': g.project_name}} AS project,
  CAST([] AS STRUCT("key" VARCHAR, "value" VARCHAR)[]) AS labels,
  {{'location': g.location_location, 'region': g.location_region,
    'zone': g.location_zone}} AS location,
  g.export_time,
  {num("cost")} AS cost,
  g.currency,
  {{'amount': {num("usage_amount")}, 'unit': g.usage_unit,
    'amount_in_pricing_units': {num("usage_amount_in_pricing_units")},
    'pricing_unit': g.usage_pricing_unit}} AS usage,
  coalesce(c.credits, CAST([] AS STRUCT(name VARCHAR, amount DECIMAL(38,12), full_name VARCHAR,
                                        id VARCHAR, type VARCHAR)[])) AS credits,
  {{'month': g.invoice_month}} AS invoice,
  g.cost_type,
  {{'description': g.adjustment_description}} AS adjustment_info,
  {num("cost_at_list")} AS cost_at_list,
  g.transaction_type,
  g.seller_name,
  CAST(g.line_count AS BIGINT) AS {LINE_COUNT}
FROM g LEFT JOIN c ON {_join_on("g", "c")}"""


#: The fields ``nest_sql`` writes, per top-level field (None: the whole field; a tuple: only
#: those sub-fields of the RECORD).
_LAYOUT: Mapping[str, tuple[str, ...] | None] = {
    "billing_account_id": None,
    "service": ("id", "description"),
    "sku": ("id", "description"),
    "usage_start_time": None,
    "usage_end_time": None,
    "project": ("id", "name"),
    "labels": None,
    "location": ("location", "region", "zone"),
    "export_time": None,
    "cost": None,
    "currency": None,
    "usage": None,
    "credits": None,
    "invoice": ("month",),
    "cost_type": None,
    "adjustment_info": ("description",),
    "cost_at_list": None,
    "transaction_type": None,
    "seller_name": None,
}


def grain_schema(table_fields: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The table's schema (bq JSON form) cut to what ``nest_sql`` writes, plus LINE_COUNT:
    the grain's own schema.json, so the reader types exactly what is there."""
    out: list[dict[str, Any]] = []
    for f in table_fields:
        if f["name"] not in _LAYOUT:
            continue
        keep = _LAYOUT[f["name"]]
        field = dict(f)
        if keep is not None:
            field["fields"] = [s for s in f.get("fields", []) if s["name"] in keep]
        out.append(field)
    out.append({"name": LINE_COUNT, "type": "INTEGER", "mode": "NULLABLE",
                "description": "export rows summed into this row (revshare pushdown)"})  # fmt: skip
    return out


def is_grain_schema(schema: Any) -> bool:
    """True for the schema.json of a pushdown pull (it declares LINE_COUNT)."""
    return isinstance(schema, list) and any(
        isinstance(f, dict) and f.get("name") == LINE_COUNT for f in schema
    )
