"""The limit: one DuckDB pass from the native files to the reconciliation grain, nothing more.

No landing, no validation, no canonical schema, no exact decimals, no report: each native
format is scanned once for the columns the grain needs, summed per (partner, SKU key,
currency), and the few hundred SKU keys are then mapped to (model, unit) with the catalog's
regex rules. Money is summed as DOUBLE, the cheapest sum there is, so this is a lower bound
on the time any reader of these files needs, not a second implementation to trust; its totals
agree with the pipeline's to the cent (checked by the bench).

Run as ``python -m revshare.bench.limit --data DIR --period YYYY-MM --out FILE.json`` so that
the bench measures it in a process of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa

from revshare.bench.natives import Native, locate, reference_main
from revshare.config import Config
from revshare.db import connect
from revshare.periods import Period
from revshare.sqlutil import lit

#: The native line types the references count as Usage (the pipeline's ChargeCategory Usage).
AWS_USAGE = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")


def _files(n: Native, which: tuple[Path, ...] | None = None) -> str:
    return "[" + ", ".join(lit(p) for p in (which or n.files)) + "]"


def _scan(n: Native, period: Period) -> str:
    """SKU key, currency, usage quantity and cost, and all lines read, for one source."""
    p = lit(n.partner)
    start, end = f"{period.start:%Y-%m-%d}", f"{period.end:%Y-%m-%d}"
    if n.format == "aws":
        usage = f"line_item_line_item_type IN ({', '.join(lit(t) for t in AWS_USAGE)}) AND bill_billing_period_start_date = TIMESTAMPTZ '{start} 00:00:00+00'"  # noqa: E501
        return f"""SELECT {p} AS partner, line_item_usage_type AS sku,
          line_item_currency_code AS ccy, count(*) AS n,
          sum(line_item_usage_amount) FILTER (WHERE {usage}) AS q,
          sum(line_item_unblended_cost) FILTER (WHERE {usage}) AS c
        FROM read_parquet({_files(n)}) GROUP BY ALL"""
    if n.format == "gcp":
        cols = (
            "{'sku': 'STRUCT(description VARCHAR)', 'usage': 'STRUCT(amount DOUBLE)', "
            "'cost': 'DOUBLE', 'currency': 'VARCHAR', 'cost_type': 'VARCHAR', "
            "'invoice': 'STRUCT(month VARCHAR)'}"
        )
        usage = f"cost_type = 'regular' AND invoice.month = {lit(period.compact)}"
        return f"""SELECT {p} AS partner, sku.description AS sku, currency AS ccy,
          count(*) AS n, sum(usage.amount) FILTER (WHERE {usage}) AS q,
          sum(cost) FILTER (WHERE {usage}) AS c
        FROM read_json({_files(n)}, columns = {cols}, format = 'newline_delimited')
        GROUP BY ALL"""
    if n.format == "azure":
        types = (
            "{'quantity': 'DOUBLE', 'costInBillingCurrency': 'DOUBLE', "
            "'billingPeriodStartDate': 'VARCHAR', 'meterName': 'VARCHAR', "
            "'chargeType': 'VARCHAR', 'billingCurrency': 'VARCHAR'}"
        )
        bp = "strptime(billingPeriodStartDate, '%m/%d/%Y')"
        usage = f"lower(chargeType) = 'usage' AND {bp} >= '{start}' AND {bp} < '{end}'"
        return f"""SELECT {p} AS partner, meterName AS sku, billingCurrency AS ccy,
          count(*) AS n, sum(quantity) FILTER (WHERE {usage}) AS q,
          sum(costInBillingCurrency) FILTER (WHERE {usage}) AS c
        FROM read_csv({_files(n)}, header = true, types = {types}) GROUP BY ALL"""
    # Snowflake: Cortex credits summed per account, region, day and model, then priced by the
    # day's rate sheet (a few hundred rows) rather than joining the rate to every call.
    return f"""SELECT {p} AS partner, u.sku, r.CURRENCY AS ccy, sum(u.n) AS n, sum(u.q) AS q,
        CAST(sum(u.credits * r.EFFECTIVE_RATE) AS DOUBLE) AS c
      FROM (SELECT ACCOUNT_LOCATOR, REGION, CAST(START_TIME AS DATE) AS day,
              MODEL_NAME AS sku, count(*) AS n, CAST(sum(TOKENS) AS DOUBLE) AS q,
              sum(TOKEN_CREDITS) AS credits
            FROM read_parquet({_files(n)})
            WHERE START_TIME >= TIMESTAMPTZ '{start} 00:00:00+00'
              AND START_TIME < TIMESTAMPTZ '{end} 00:00:00+00'
            GROUP BY ALL) u
      JOIN read_parquet({_files(n, n.rates)}) r
        ON r.ACCOUNT_LOCATOR = u.ACCOUNT_LOCATOR AND r.REGION = u.REGION
       AND r.DATE = u.day AND r.USAGE_TYPE = 'ai_services'
      GROUP BY ALL"""


def count_sql(n: Native) -> str:
    """All lines of one source's files (Cortex calls for Snowflake), for lines per second."""
    if n.format in ("aws", "snowflake"):
        return f"SELECT count(*) FROM read_parquet({_files(n)})"
    if n.format == "gcp":
        cols = "{'cost': 'DOUBLE'}"
        return f"SELECT count(*) FROM read_json({_files(n)}, columns = {cols}, format = 'newline_delimited')"  # noqa: E501
    return f"SELECT count(*) FROM read_csv({_files(n)}, header = true, all_varchar = true)"


def register_catalog(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """The catalog's scope, model and unit rules of every partner, as three small tables."""
    scope, models, units = [], [], []
    for pid, cat in config.catalog.partners.items():
        scope.append({"partner": pid, "pattern": cat.scope})
        models += [
            {"partner": pid, "prio": i, "pattern": r.match, "model": r.model}
            for i, r in enumerate(cat.models)
        ]
        units += [
            {"partner": pid, "prio": i, "pattern": r.match, "unit": r.unit,
             "tpu": float(r.tokens_per_unit or cat.tokens_per_unit)}
            for i, r in enumerate(cat.units)
        ]  # fmt: skip
    con.register("_scope", pa.Table.from_pylist(scope))
    con.register("_models", pa.Table.from_pylist(models))
    con.register("_units", pa.Table.from_pylist(units))


GRAIN_SQL = """
WITH keys AS (SELECT DISTINCT partner, sku FROM raw WHERE sku IS NOT NULL),
mm AS (SELECT k.partner, k.sku, arg_min(r.model, r.prio) AS model FROM keys k
       JOIN _models r ON r.partner = k.partner AND regexp_matches(k.sku, r.pattern) GROUP BY ALL),
um AS (SELECT k.partner, k.sku, arg_min(r.unit, r.prio) AS unit, arg_min(r.tpu, r.prio) AS tpu
       FROM keys k JOIN _units r ON r.partner = k.partner AND regexp_matches(k.sku, r.pattern)
       GROUP BY ALL),
sc AS (SELECT k.partner, k.sku FROM keys k JOIN _scope s
       ON s.partner = k.partner AND regexp_matches(k.sku, s.pattern))
SELECT raw.partner, mm.model, um.unit, raw.ccy, sum(raw.q * um.tpu) AS tokens, sum(raw.c) AS cost
FROM raw JOIN sc USING (partner, sku) JOIN mm USING (partner, sku) JOIN um USING (partner, sku)
WHERE raw.q IS NOT NULL
GROUP BY ALL ORDER BY ALL
"""


def grain(config: Config, period: Period, data_dir: Path) -> dict:
    """Run the pass; return the grain in billing currency and the lines read per partner."""
    con = connect(memory_limit="2GB")
    sources = locate(config, period, data_dir)
    t0 = time.perf_counter()
    union = "\nUNION ALL BY NAME\n".join(_scan(n, period) for n in sources)
    con.execute(f"CREATE TEMP TABLE raw AS {union}")
    register_catalog(con, config)
    rows = con.execute(GRAIN_SQL).fetchall()
    lines = dict(con.execute("SELECT partner, sum(n) FROM raw GROUP BY ALL").fetchall())
    seconds = time.perf_counter() - t0
    cols = ("partner", "model_id", "unit", "currency", "tokens", "cost")
    return {
        "seconds": seconds,
        "lines": {n.partner: int(lines.get(n.partner, 0)) for n in sources},
        "by_currency": [dict(zip(cols, r, strict=True)) for r in rows],
    }


def main(argv: list[str] | None = None) -> None:
    reference_main(__doc__, grain, argv)


if __name__ == "__main__":
    main()
