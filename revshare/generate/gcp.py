"""Google Cloud writer: the standard Cloud Billing export, as BigQuery would extract it.

Real deliveries are a BigQuery table (``gcp_billing_export_v1_<ACCOUNT>``). Its local-file form,
which the demo and tests use, is what ``bq show --schema`` and an extract job of one invoice-month
partition give::

    <table>/schema.json                                          the table schema (bq JSON form)
    <table>/invoice_month=YYYYMM/<table>-000000000000.json.gz    rows, newline-delimited JSON
    <table>/invoice_month=YYYYMM/<table>-000000000001.json.gz    ... one file per 500,000 rows

Choices that mirror BigQuery's JSON extract: FLOAT columns are JSON numbers (the shortest text
that round-trips the double), NUMERIC columns are JSON strings (BigQuery keeps their precision
that way), TIMESTAMPs are ``YYYY-MM-DD HH:MM:SS[.ffffff] UTC`` strings, empty REPEATED fields
are ``[]``. Credit lines are not rows of their own: each sits in its usage row's ``credits``
array, which is how Google reports promotions and discounts.

Vertex AI partner models (MaaS) bill per token. Google documents those usage metrics as
dimensionless, and Cloud Billing names dimensionless units ``count``; the per-1M-token list
price shows as ``price.effective_price`` with ``price.pricing_unit_quantity = 1000000``. So:
usage.amount = tokens, usage.unit = usage.pricing_unit = 'count'.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from revshare.db import connect
from revshare.periods import Period
from revshare.sqlutil import lit

#: BigQuery table names: letters, digits, underscores.
TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: BigQuery extract jobs shard large results; we cap each file at this many rows.
ROWS_PER_FILE = 500_000
#: Tokens are priced per million; that is the SKU's pricing tier quantity.
PRICING_UNIT_QUANTITY = 1_000_000
#: Hours between the end of a usage hour and the export append that carries it.
EXPORT_LAG_HOURS = 4
#: Vertex AI's Cloud Billing service id (public SKU catalog); others get a stable hashed id.
SERVICE_IDS = {"Vertex AI": "C7E2-9256-1C43"}


def _f(
    name: str,
    typ: str,
    mode: str = "NULLABLE",
    fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": typ, "mode": mode}
    if fields is not None:
        field["fields"] = fields
    return field


def _kv() -> list[dict[str, Any]]:
    return [_f("key", "STRING"), _f("value", "STRING")]


#: The standard usage cost export schema (gcp_billing_export_v1_*), in BigQuery's order.
BQ_SCHEMA: list[dict[str, Any]] = [
    _f("billing_account_id", "STRING"),
    _f("service", "RECORD", fields=[_f("id", "STRING"), _f("description", "STRING")]),
    _f("sku", "RECORD", fields=[_f("id", "STRING"), _f("description", "STRING")]),
    _f("usage_start_time", "TIMESTAMP"),
    _f("usage_end_time", "TIMESTAMP"),
    _f(
        "project",
        "RECORD",
        fields=[
            _f("id", "STRING"),
            _f("number", "STRING"),
            _f("name", "STRING"),
            _f("labels", "RECORD", "REPEATED", _kv()),
            _f("ancestry_numbers", "STRING"),
            _f(
                "ancestors",
                "RECORD",
                "REPEATED",
                [_f("resource_name", "STRING"), _f("display_name", "STRING")],
            ),
        ],
    ),
    _f("labels", "RECORD", "REPEATED", _kv()),
    _f("system_labels", "RECORD", "REPEATED", _kv()),
    _f(
        "location",
        "RECORD",
        fields=[
            _f("location", "STRING"),
            _f("country", "STRING"),
            _f("region", "STRING"),
            _f("zone", "STRING"),
        ],
    ),
    _f(
        "tags",
        "RECORD",
        "REPEATED",
        [
            _f("key", "STRING"),
            _f("value", "STRING"),
            _f("inherited", "BOOLEAN"),
            _f("namespace", "STRING"),
        ],
    ),
    _f("export_time", "TIMESTAMP"),
    _f("cost", "FLOAT"),
    _f("currency", "STRING"),
    _f("currency_conversion_rate", "FLOAT"),
    _f(
        "usage",
        "RECORD",
        fields=[
            _f("amount", "FLOAT"),
            _f("unit", "STRING"),
            _f("amount_in_pricing_units", "FLOAT"),
            _f("pricing_unit", "STRING"),
        ],
    ),
    _f(
        "credits",
        "RECORD",
        "REPEATED",
        [
            _f("name", "STRING"),
            _f("amount", "FLOAT"),
            _f("full_name", "STRING"),
            _f("id", "STRING"),
            _f("type", "STRING"),
        ],
    ),
    _f("invoice", "RECORD", fields=[_f("month", "STRING"), _f("publisher_type", "STRING")]),
    _f("cost_type", "STRING"),
    _f(
        "adjustment_info",
        "RECORD",
        fields=[
            _f("id", "STRING"),
            _f("description", "STRING"),
            _f("mode", "STRING"),
            _f("type", "STRING"),
        ],
    ),
    _f("cost_at_list", "FLOAT"),
    _f("transaction_type", "STRING"),
    _f("seller_name", "STRING"),
    _f(
        "price",
        "RECORD",
        fields=[
            _f("effective_price", "NUMERIC"),
            _f("tier_start_amount", "NUMERIC"),
            _f("unit", "STRING"),
            _f("pricing_unit_quantity", "NUMERIC"),
        ],
    ),
]


def _ts(col: str) -> str:
    """BigQuery's JSON text for a TIMESTAMP; fractional seconds only when there are any."""
    utc = f"timezone('UTC', {col})"
    return (
        f"CASE WHEN {col} IS NULL THEN NULL "
        f"WHEN microsecond({utc}) % 1000000 = 0 THEN strftime({utc}, '%Y-%m-%d %H:%M:%S UTC') "
        f"ELSE strftime({utc}, '%Y-%m-%d %H:%M:%S.%f UTC') END"
    )


def _float(col: str) -> str:
    # Through text, so the double is the correctly rounded neighbour of the exact decimal and
    # the JSON writer's shortest representation gives the decimal back (<= 15 significant
    # digits). A direct DECIMAL -> DOUBLE cast can be one ulp off for large scaled values.
    return f"CAST(CAST({col} AS VARCHAR) AS DOUBLE)"


def _numeric(col: str) -> str:
    """BigQuery NUMERIC has scale 9 and is extracted as a JSON string."""
    return f"CAST(CAST({col} AS DECIMAL(38,9)) AS VARCHAR)"


def _hash_id(col: str) -> str:
    """A stable GCP-looking id (XXXX-XXXX-XXXX) from a string."""
    h = f"upper(md5({col}))"
    return f"({h}[1:4] || '-' || {h}[5:8] || '-' || {h}[9:12])"


_SERVICE_ID_CASE = (
    "CASE "
    + " ".join(f"WHEN l.service = {lit(name)} THEN {lit(sid)}" for name, sid in SERVICE_IDS.items())
    + f" ELSE {_hash_id('l.service')} END"
)

#: Country of a region, as location.country shows it; regions not listed leave it null.
REGION_COUNTRY = {
    "europe-west1": "BE",
    "europe-west2": "GB",
    "europe-west3": "DE",
    "europe-west4": "NL",
    "asia-northeast1": "JP",
    "asia-southeast1": "SG",
    "northamerica-northeast1": "CA",
}
_COUNTRY = (
    "CASE WHEN l.region LIKE 'us-%' THEN 'US' "
    + " ".join(f"WHEN l.region = {lit(r)} THEN {lit(c)}" for r, c in REGION_COUNTRY.items())
    + " END"
)

# Rows reach the table a few hours after their usage hour; late rows (usage in the previous
# month) are appended once the invoice month has begun. Derived from the data, never the clock.
_EXPORT_TIME = _ts(
    "greatest(l.usage_end, CAST(l.billing_period || '-01 00:00:00+00' AS TIMESTAMPTZ))"
    f" + INTERVAL {EXPORT_LAG_HOURS} HOUR"
)

# One export row per usage, tax and refund line; credits nest into their parent's array.
_EXPORT_SQL = f"""
WITH cr AS (
  SELECT parent_line_id,
         list({{
           'name': 'Promotional credit: ' || service,
           'amount': {_float("cost")},
           'full_name': 'Promotional credit: ' || service,
           'id': 'PROMOTION-' || {_hash_id("line_id")},
           'type': 'PROMOTION'
         }} ORDER BY line_id) AS credits
  FROM lines WHERE kind = 'credit' GROUP BY parent_line_id
), rows AS (
  SELECT
    row_number() OVER (ORDER BY l.usage_start, l.line_id) AS _rn,
    l.account_id AS billing_account_id,
    {{'id': {_SERVICE_ID_CASE}, 'description': l.service}} AS service,
    {{'id': CASE WHEN l.sku_key IS NULL THEN NULL
               ELSE coalesce(l.sku_id, max(l.sku_id) OVER (PARTITION BY l.sku_key),
                             {_hash_id("l.sku_key")}) END,
      'description': l.sku_key}} AS sku,
    {_ts("l.usage_start")} AS usage_start_time,
    {_ts("l.usage_end")} AS usage_end_time,
    {{'id': 'llm-serving-' || lower({_hash_id("l.account_id")}[1:4]),
      'number': CAST(100000000000 + CAST('0x' || md5(l.account_id)[1:9] AS BIGINT) AS VARCHAR),
      'name': 'LLM serving',
      'labels': CAST([] AS STRUCT("key" VARCHAR, "value" VARCHAR)[]),
      'ancestry_numbers': NULL::VARCHAR,
      'ancestors': CAST([] AS STRUCT(resource_name VARCHAR, display_name VARCHAR)[])}}
      AS project,
    CAST([] AS STRUCT("key" VARCHAR, "value" VARCHAR)[]) AS labels,
    CAST([] AS STRUCT("key" VARCHAR, "value" VARCHAR)[]) AS system_labels,
    {{'location': l.region, 'country': {_COUNTRY}, 'region': l.region,
      'zone': NULL::VARCHAR}} AS location,
    CAST([] AS STRUCT("key" VARCHAR, "value" VARCHAR, inherited BOOLEAN, namespace VARCHAR)[])
      AS tags,
    {_EXPORT_TIME} AS export_time,
    {_float("l.cost")} AS cost,
    l.currency,
    CASE WHEN l.currency = 'USD' THEN 1.0::DOUBLE END AS currency_conversion_rate,
    {{'amount': {_float("coalesce(l.quantity, 0)")},
      'unit': CASE WHEN l.kind = 'tax' THEN NULL ELSE 'count' END,
      'amount_in_pricing_units': {_float("coalesce(l.quantity, 0)")},
      'pricing_unit': CASE WHEN l.kind = 'tax' THEN NULL ELSE 'count' END}} AS usage,
    coalesce(cr.credits, CAST([] AS STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR,
                                            id VARCHAR, type VARCHAR)[])) AS credits,
    {{'month': replace(l.billing_period, '-', ''), 'publisher_type': 'GOOGLE'}} AS invoice,
    CASE l.kind WHEN 'usage' THEN 'regular' WHEN 'tax' THEN 'tax' ELSE 'adjustment' END
      AS cost_type,
    CASE WHEN l.kind = 'refund' THEN
      {{'id': lower(md5(l.line_id)),
        'description': 'Refund: ' || coalesce(l.sku_key, l.service),
        'mode': 'MANUAL_ADJUSTMENT', 'type': 'GOODWILL'}} END AS adjustment_info,
    {_float("l.cost")} AS cost_at_list,
    'GOOGLE' AS transaction_type,
    NULL::VARCHAR AS seller_name,
    CASE WHEN l.kind <> 'tax' AND l.unit_price IS NOT NULL THEN
      {{'effective_price': {_numeric(f"l.unit_price * {PRICING_UNIT_QUANTITY}")},
        'tier_start_amount': '0',
        'unit': 'count',
        'pricing_unit_quantity': '{PRICING_UNIT_QUANTITY}'}} END AS price
  FROM lines l LEFT JOIN cr ON cr.parent_line_id = l.line_id
  WHERE l.kind IN ('usage', 'tax', 'refund')
)
SELECT * FROM rows
"""


def _check(con: duckdb.DuckDBPyConnection, period: Period) -> None:
    """Refuse inputs the export cannot represent, rather than dropping money silently."""
    bad = con.execute(f"""
        SELECT
          count(*) FILTER (WHERE billing_period IS DISTINCT FROM {lit(str(period))}),
          count(*) FILTER (WHERE partner IS DISTINCT FROM 'gcp'),
          count(*) FILTER (WHERE kind NOT IN ('usage', 'tax', 'credit', 'refund')),
          (SELECT count(*) FROM lines c
             ANTI JOIN (SELECT line_id FROM lines WHERE kind = 'usage') p
             ON c.parent_line_id = p.line_id WHERE c.kind = 'credit')
        FROM lines
    """).fetchone()
    assert bad is not None
    problems = [
        f"{bad[0]} rows invoiced in another month than {period}",
        f"{bad[1]} rows of another partner",
        f"{bad[2]} rows of unknown kind",
        f"{bad[3]} credit rows without a usage parent (credits nest into their parent row)",
    ]
    found = [p for n, p in zip(bad, problems, strict=True) if n]
    if found:
        raise ValueError("gcp writer: " + "; ".join(found))


def write(
    lines: pa.Table,
    period: Period,
    root: Path,
    *,
    table: str,
    version: int = 1,
) -> list[Path]:
    """Write ``lines`` (GEN_LINES_SCHEMA, partner gcp) as the standard billing export.

    All lines must be invoiced in ``period`` (late rows included: their usage lies in the month
    before, their ``billing_period`` is ``period``); they become the partition
    ``invoice_month=<period>``, so a call never touches another month's files. The partition is
    written whole, replacing any file set already there: that is what re-extracting a
    partition of the append-only table gives, so a later ``version`` simply holds more rows
    (corrections appended by the generator). BigQuery has no version id of its own, hence
    nothing records ``version`` on disk.
    """
    sink = Sink(period, root, table=table, version=version)
    sink.add(lines)
    return sink.close()


class Sink:
    """One partition extract written in chunks: each ``add`` appends shards (numbered on from
    the last), so a month too large to hold at once is written slice by slice. A credit must
    come in the same chunk as the usage row it nests into."""

    def __init__(self, period: Period, root: Path, *, table: str, version: int = 1) -> None:
        if not TABLE_NAME.match(table):
            raise ValueError(f"not a BigQuery table name: {table!r}")
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        self.period, self.table = period, table
        table_dir = root / table
        table_dir.mkdir(parents=True, exist_ok=True)
        schema_path = table_dir / "schema.json"
        schema_path.write_text(json.dumps(BQ_SCHEMA, indent=2) + "\n")
        self.written = [schema_path]
        self.shards = 0
        self.part = table_dir / f"invoice_month={period.compact}"
        self.part.mkdir(exist_ok=True)
        for old in self.part.glob(f"{table}-*.json.gz"):
            old.unlink()

    def add(self, lines: pa.Table, *, temp_dir: Path | None = None) -> None:
        """Append ``lines`` as further shards; DuckDB spills to ``temp_dir`` past 1 GB."""
        con = connect(memory_limit="1GB", temp_dir=temp_dir)
        try:
            con.register("lines", lines)
            _check(con, self.period)
            con.execute(f"CREATE TEMP TABLE export AS {_EXPORT_SQL}")
            row = con.execute("SELECT count(*) FROM export").fetchone()
            n = row[0] if row else 0
            # An empty month leaves an empty partition, as BigQuery would have none to extract.
            for i in range((n + ROWS_PER_FILE - 1) // ROWS_PER_FILE):
                path = self.part / f"{self.table}-{self.shards:012d}.json.gz"
                lo, hi = i * ROWS_PER_FILE + 1, (i + 1) * ROWS_PER_FILE
                con.execute(
                    f"COPY (SELECT * EXCLUDE (_rn) FROM export "
                    f"WHERE _rn BETWEEN {lo} AND {hi} ORDER BY _rn) "
                    f"TO {lit(path)} (FORMAT json, COMPRESSION gzip)"
                )
                self.written.append(path)
                self.shards += 1
        finally:
            con.close()

    def close(self) -> list[Path]:
        """The schema file and every shard written (BigQuery extracts carry no manifest)."""
        return list(self.written)
