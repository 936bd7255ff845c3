"""Write generated Snowflake lines as the usage views, unloaded to Parquet.

Snowflake delivers views, not files, so the local layout is ours. It is what
``COPY INTO @stage/<period>/<VIEW>/ FROM (SELECT ... WHERE <date> in period)
FILE_FORMAT=(TYPE=PARQUET) HEADER=TRUE OVERWRITE=TRUE`` writes, one folder per view::

    ROOT/YYYY-MM/CORTEX_FUNCTIONS_USAGE_HISTORY/data_0_0_0.snappy.parquet   (_1, _2, ... when a
                                                                    large month is sliced)
    ROOT/YYYY-MM/USAGE_IN_CURRENCY_DAILY/data_0_0_0.snappy.parquet
    ROOT/YYYY-MM/RATE_SHEET_DAILY/data_0_0_0.snappy.parquet
    ROOT/YYYY-MM/unload_manifest.json      (written last: version and file list)

CORTEX_FUNCTIONS_USAGE_HISTORY is an ACCOUNT_USAGE view and names no account, so each
account's unload query prepends ``CURRENT_ACCOUNT() AS ACCOUNT_LOCATOR, CURRENT_REGION() AS
REGION``; every other column is the view's own, with Snowflake's names and types.

Mapping from the generator's lines (``GEN_LINES_SCHEMA``):
- Cortex usage (``kind='usage'`` and ``licensed`` or service ``ai_services``, any case) -> one
  CORTEX_FUNCTIONS_USAGE_HISTORY row per line: ACCOUNT_LOCATOR = account_id, REGION = region,
  START_TIME = the usage hour, FUNCTION_NAME 'COMPLETE', MODEL_NAME = sku_key, TOKENS =
  quantity, TOKEN_CREDITS = credits. Lines sharing an hour and a model get distinct
  WAREHOUSE_IDs, so the view stays unique per (hour, function, model, warehouse) as it is.
- RATE_SHEET_DAILY: one row per (date, account, region, usage type) with EFFECTIVE_RATE =
  credit_price, for usage types billed in credits (Cortex, and others with a credit_price).
- USAGE_IN_CURRENCY_DAILY: per (date, account, region, usage type, billing type) the day's
  total; for ai_services USAGE = credits and USAGE_IN_CURRENCY = credits x rate; other usage
  types (the lower-cased service: 'compute', 'storage', ...) sum credits (else quantity) and
  cost; credit and refund lines become IS_ADJUSTMENT rows (BILLING_TYPE 'support_credit').
- ORGANIZATION_NAME is the part of account_id before a dot ("ORG1.ACME_PROD"), else a constant.

Snowflake dates rows by usage, so the period's unload holds the lines whose usage_start falls
in the period; ``billing_period`` has no column to go to and is ignored. USAGE NUMBER(38,3) and
USAGE_IN_CURRENCY NUMBER(38,2) are daily totals, rounded half away from zero as Snowflake
rounds them. Licensed money is never rounded: credits that NUMBER(38,9) cannot hold, a rate
with more than 2 decimals (EFFECTIVE_RATE is NUMBER(38,2)) or a cost that is not credits x
rate is a ValueError, since the views could not carry it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from revshare.db import connect
from revshare.periods import Period

CORTEX = "CORTEX_FUNCTIONS_USAGE_HISTORY"
DAILY = "USAGE_IN_CURRENCY_DAILY"
RATES = "RATE_SHEET_DAILY"
DATA_FILE = "data_0_0_0.snappy.parquet"
MANIFEST = "unload_manifest.json"
AI_USAGE_TYPE = "ai_services"
ORGANIZATION = "REVSHARE_DEMO_ORG"
CONTRACT = "SFC-000001"

_TS = pa.timestamp("us", tz="UTC")
_NUM = pa.decimal128(38, 0)

CORTEX_SCHEMA = pa.schema(
    [
        ("ACCOUNT_LOCATOR", pa.string()),
        ("REGION", pa.string()),
        ("START_TIME", _TS),
        ("END_TIME", _TS),
        ("FUNCTION_NAME", pa.string()),
        ("MODEL_NAME", pa.string()),
        ("WAREHOUSE_ID", _NUM),
        ("TOKENS", _NUM),
        ("TOKEN_CREDITS", pa.decimal128(38, 9)),
    ]
)
DAILY_SCHEMA = pa.schema(
    [
        ("ORGANIZATION_NAME", pa.string()),
        ("CONTRACT_NUMBER", pa.string()),
        ("ACCOUNT_NAME", pa.string()),
        ("ACCOUNT_LOCATOR", pa.string()),
        ("REGION", pa.string()),
        ("SERVICE_LEVEL", pa.string()),
        ("USAGE_DATE", pa.date32()),
        ("USAGE_TYPE", pa.string()),
        ("USAGE", pa.decimal128(38, 3)),
        ("CURRENCY", pa.string()),
        ("USAGE_IN_CURRENCY", pa.decimal128(38, 2)),
        ("BALANCE_SOURCE", pa.string()),
        ("BILLING_TYPE", pa.string()),
        ("RATING_TYPE", pa.string()),
        ("SERVICE_TYPE", pa.string()),
        ("IS_ADJUSTMENT", pa.bool_()),
    ]
)
RATES_SCHEMA = pa.schema(
    [
        ("DATE", pa.date32()),
        ("ORGANIZATION_NAME", pa.string()),
        ("CONTRACT_NUMBER", pa.string()),
        ("ACCOUNT_NAME", pa.string()),
        ("ACCOUNT_LOCATOR", pa.string()),
        ("REGION", pa.string()),
        ("SERVICE_LEVEL", pa.string()),
        ("USAGE_TYPE", pa.string()),
        ("CURRENCY", pa.string()),
        ("EFFECTIVE_RATE", pa.decimal128(38, 2)),
        ("SERVICE_TYPE", pa.string()),
        ("RATING_TYPE", pa.string()),
        ("BILLING_TYPE", pa.string()),
        ("IS_ADJUSTMENT", pa.bool_()),
    ]
)

# The period's Snowflake lines, with the derived date, usage type and Cortex flag.
_LINES = f"""
SELECT *,
  CAST(usage_start AS DATE) AS d,
  (kind = 'usage' AND (licensed OR lower(service) = '{AI_USAGE_TYPE}')) AS is_cortex,
  CASE WHEN licensed OR lower(service) = '{AI_USAGE_TYPE}' THEN '{AI_USAGE_TYPE}'
    ELSE lower(service) END AS usage_type,
  CASE WHEN contains(account_id, '.') THEN split_part(account_id, '.', 1)
    ELSE '{ORGANIZATION}' END AS organization
FROM lines
WHERE partner = 'snowflake' AND usage_start >= ? AND usage_start < ?
"""

_RATING = (
    "CASE usage_type WHEN 'storage' THEN 'storage' WHEN 'data_transfer' THEN 'other' "
    "ELSE 'compute' END"
)

# (what the views cannot represent, query returning the offending line ids)
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "kind must be usage, credit or refund (the views carry no tax)",
        "SELECT line_id FROM l WHERE kind NOT IN ('usage', 'credit', 'refund')",
    ),
    (
        "account_id, region and service (the usage type) are required",
        "SELECT line_id FROM l WHERE account_id IS NULL OR region IS NULL "
        "OR usage_type IS NULL OR usage_type = ''",
    ),
    (
        "an account bills in one currency",
        "SELECT min(line_id) FROM l GROUP BY account_id HAVING count(DISTINCT currency) > 1",
    ),
    (
        "Cortex lines need sku_key (MODEL_NAME), quantity, credits and credit_price",
        "SELECT line_id FROM l WHERE is_cortex AND (sku_key IS NULL OR credits IS NULL "
        "OR credit_price IS NULL OR quantity IS NULL)",
    ),
    (
        "TOKENS is NUMBER(38,0): quantity must be whole tokens",
        "SELECT line_id FROM l WHERE is_cortex AND quantity <> round(quantity, 0)",
    ),
    (
        "TOKEN_CREDITS is NUMBER(38,9): credits must have at most 9 decimals",
        "SELECT line_id FROM l WHERE is_cortex AND credits <> round(credits, 9)",
    ),
    (
        "EFFECTIVE_RATE is NUMBER(38,2): credit_price must have at most 2 decimals",
        "SELECT line_id FROM l WHERE credit_price IS NOT NULL "
        "AND credit_price <> round(credit_price, 2)",
    ),
    (
        "the views carry credits and a rate, so cost must equal credits x credit_price",
        "SELECT line_id FROM l WHERE is_cortex AND cost IS NOT NULL "
        "AND cost <> CAST(credits AS DECIMAL(38,9)) * CAST(credit_price AS DECIMAL(38,2))",
    ),
    (
        "the rate sheet has one rate per date, account, region and usage type",
        "SELECT min(line_id) FROM l WHERE kind = 'usage' AND credit_price IS NOT NULL "
        "GROUP BY account_id, region, d, usage_type HAVING count(DISTINCT credit_price) > 1",
    ),
)

# WAREHOUSE_ID numbers the lines sharing an hour and a model; chunk ``k`` of a delivery
# starts at 100000 + k x WAREHOUSE_STRIDE so the view stays unique across chunks.
WAREHOUSE_STRIDE = 1_000_000
_CORTEX_SQL = """
SELECT account_id AS ACCOUNT_LOCATOR, region AS REGION,
  date_trunc('hour', usage_start) AS START_TIME,
  date_trunc('hour', usage_start) + INTERVAL 1 HOUR AS END_TIME,
  'COMPLETE' AS FUNCTION_NAME,
  sku_key AS MODEL_NAME,
  CAST({first} + row_number() OVER (
    PARTITION BY account_id, region, date_trunc('hour', usage_start), sku_key ORDER BY line_id
  ) AS DECIMAL(38,0)) AS WAREHOUSE_ID,
  CAST(quantity AS DECIMAL(38,0)) AS TOKENS,
  CAST(credits AS DECIMAL(38,9)) AS TOKEN_CREDITS
FROM l WHERE is_cortex
ORDER BY ACCOUNT_LOCATOR, REGION, START_TIME, MODEL_NAME, WAREHOUSE_ID
"""

# The daily views are whole-month aggregates, so each chunk leaves exact, unrounded partial
# sums (a few rows per day) and ``Sink.close`` adds them up and rounds once, as one pass would.
_ACCT_PART_SQL = "SELECT DISTINCT account_id, account_name, organization, currency FROM l"
_DAYS_PART_SQL = """
SELECT account_id, region, d, usage_type, 'consumption' AS billing_type, false AS is_adj,
  sum(CAST(credits AS DECIMAL(38,9))) AS usage,
  sum(CAST(credits AS DECIMAL(38,9)) * CAST(credit_price AS DECIMAL(38,2))) AS amount
FROM l WHERE is_cortex GROUP BY ALL
UNION ALL
SELECT account_id, region, d, usage_type,
  CASE WHEN kind = 'usage' THEN 'consumption' ELSE 'support_credit' END AS billing_type,
  kind <> 'usage' AS is_adj,
  coalesce(sum(coalesce(credits, quantity)), 0) AS usage, sum(cost) AS amount
FROM l WHERE NOT is_cortex GROUP BY ALL
"""
_RATES_PART_SQL = """
SELECT DISTINCT d, organization, account_name, account_id, region, usage_type, currency,
  credit_price
FROM l WHERE kind = 'usage' AND credit_price IS NOT NULL
"""

_DAILY_SQL = f"""
WITH acct AS (
  SELECT account_id, min(account_name) AS account_name, min(organization) AS organization,
         min(currency) AS currency
  FROM acct_part GROUP BY account_id
), days AS (
  SELECT account_id, region, d, usage_type, billing_type, is_adj,
    sum(usage) AS usage, sum(amount) AS amount
  FROM days_part GROUP BY ALL
)
SELECT a.organization AS ORGANIZATION_NAME, '{CONTRACT}' AS CONTRACT_NUMBER,
  a.account_name AS ACCOUNT_NAME, x.account_id AS ACCOUNT_LOCATOR, x.region AS REGION,
  'Enterprise' AS SERVICE_LEVEL, x.d AS USAGE_DATE, x.usage_type AS USAGE_TYPE,
  CAST(round(x.usage, 3) AS DECIMAL(38,3)) AS USAGE, a.currency AS CURRENCY,
  CAST(round(x.amount, 2) AS DECIMAL(38,2)) AS USAGE_IN_CURRENCY,
  'capacity' AS BALANCE_SOURCE, x.billing_type AS BILLING_TYPE,
  {_RATING.replace("usage_type", "x.usage_type")} AS RATING_TYPE,
  x.usage_type AS SERVICE_TYPE, x.is_adj AS IS_ADJUSTMENT
FROM days x JOIN acct a USING (account_id)
ORDER BY USAGE_DATE, ACCOUNT_LOCATOR, REGION, USAGE_TYPE, BILLING_TYPE
"""

_RATES_SQL = f"""
SELECT d AS DATE, min(organization) AS ORGANIZATION_NAME, '{CONTRACT}' AS CONTRACT_NUMBER,
  min(account_name) AS ACCOUNT_NAME, account_id AS ACCOUNT_LOCATOR, region AS REGION,
  'Enterprise' AS SERVICE_LEVEL, usage_type AS USAGE_TYPE, min(currency) AS CURRENCY,
  CAST(min(credit_price) AS DECIMAL(38,2)) AS EFFECTIVE_RATE, usage_type AS SERVICE_TYPE,
  {_RATING} AS RATING_TYPE, 'consumption' AS BILLING_TYPE, false AS IS_ADJUSTMENT
FROM rates_part
GROUP BY d, account_id, region, usage_type
ORDER BY DATE, ACCOUNT_LOCATOR, REGION, USAGE_TYPE
"""

# The two whole-month checks, re-run over the partials at close (a chunk sees only itself).
_CLOSE_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "an account bills in one currency",
        "SELECT min(account_id) FROM acct_part GROUP BY account_id "
        "HAVING count(DISTINCT currency) > 1",
    ),
    (
        "the rate sheet has one rate per date, account, region and usage type",
        "SELECT min(account_id || ' ' || d) FROM rates_part "
        "GROUP BY account_id, region, d, usage_type HAVING count(DISTINCT credit_price) > 1",
    ),
)


def _write(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    return path


def write(lines: pa.Table, period: Period, root: Path, *, version: int = 1) -> list[Path]:
    """Unload the period's Snowflake lines as the three views under ``root/YYYY-MM/``.

    Overwrites the period folder (the views are restated until the month closes; ``version``
    counts the unloads and goes into the manifest). Returns the files written, manifest last.
    Raises ValueError, naming a line, for data the views cannot carry.
    """
    sink = Sink(period, root, version=version)
    sink.add(lines)
    return sink.close()


class Sink:
    """One unload written in chunks: each ``add`` writes a further Cortex file
    (``data_0_0_<k>``) and keeps the chunk's partial daily sums; ``close`` writes the two
    daily views from them and the manifest, so a month too large to hold at once goes slice
    by slice with the same files, save the Cortex split."""

    def __init__(self, period: Period, root: Path, *, version: int = 1) -> None:
        self.period, self.root, self.version = period, root, version
        self.folder = root / str(period)
        if self.folder.exists():  # OVERWRITE=TRUE: a restated unload replaces the previous one
            shutil.rmtree(self.folder)
        self.cortex_files: list[Path] = []
        self.parts: dict[str, list[pa.Table]] = {"acct_part": [], "days_part": [],
                                                 "rates_part": []}  # fmt: skip
        self.chunks = 0

    def add(self, lines: pa.Table, *, temp_dir: Path | None = None) -> None:
        """Check and stage ``lines``; write their Cortex rows, keep their daily partials."""
        con = connect(memory_limit="1GB", temp_dir=temp_dir)
        try:
            # UTC session: dates and hour buckets are UTC, as Snowflake's usage views are.
            con.register("lines", lines)
            con.execute(f"CREATE TEMP TABLE l AS {_LINES}", [self.period.start, self.period.end])
            for message, sql in _CHECKS:
                bad = con.execute(f"SELECT min(line_id) FROM ({sql}) AS t(line_id)").fetchone()
                if bad and bad[0] is not None:
                    raise ValueError(f"snowflake writer: {message} (line {bad[0]})")
            first = 100000 + self.chunks * WAREHOUSE_STRIDE
            cortex = con.sql(_CORTEX_SQL.format(first=first)).to_arrow_table()
            self.parts["acct_part"].append(con.sql(_ACCT_PART_SQL).to_arrow_table())
            self.parts["days_part"].append(con.sql(_DAYS_PART_SQL).to_arrow_table())
            self.parts["rates_part"].append(con.sql(_RATES_PART_SQL).to_arrow_table())
        finally:
            con.close()
        self.chunks += 1
        if cortex.num_rows or not self.cortex_files:
            name = f"data_0_0_{len(self.cortex_files)}.snappy.parquet"
            path = self.folder / CORTEX / name
            self.cortex_files.append(_write(cortex.cast(CORTEX_SCHEMA), path))

    def close(self) -> list[Path]:
        """Write the daily views and the manifest (last); return every file written."""
        con = connect()
        try:
            for name, tables in self.parts.items():
                con.register(name, pa.concat_tables(tables))
            for message, sql in _CLOSE_CHECKS:
                bad = con.execute(f"SELECT min(k) FROM ({sql}) AS t(k)").fetchone()
                if bad and bad[0] is not None:
                    raise ValueError(f"snowflake writer: {message} ({bad[0]})")
            daily = con.sql(_DAILY_SQL).to_arrow_table().cast(DAILY_SCHEMA)
            rates = con.sql(_RATES_SQL).to_arrow_table().cast(RATES_SCHEMA)
        finally:
            con.close()
        written = [
            *self.cortex_files,
            _write(daily, self.folder / DAILY / DATA_FILE),
            _write(rates, self.folder / RATES / DATA_FILE),
        ]
        manifest = {
            "period": str(self.period),
            "version": self.version,
            "files": [p.relative_to(self.root).as_posix() for p in written],
        }
        manifest_path = self.folder / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return [*written, manifest_path]
