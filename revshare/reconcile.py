"""Reconciliation of one partner's statement against its billing, in DuckDB SQL.

The grain is (partner, period, model, unit[, region]: the matching rules) in the contract's
reporting currency. Billing in other currencies is converted by the contract's FX policy
(month-end or daily rates from config); the rate booked is kept on every row. Tiered
contracts price every model at the month's blended rate; a binding minimum guarantee adds a
partner-level top-up row. All arithmetic is DECIMAL; nothing is rounded here (presentation
rounds, half-even).

A difference is within tolerance when |diff| <= max(absolute, relative * |expected|); token
quantities use the relative tolerance alone. The discrepancy amount is always
reported share - expected share, so the amounts of a partner add up to reported share -
max(expected share, guarantee).
Classification is pure: the same inputs give the same rows in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from revshare import lines as line_files
from revshare import terms
from revshare.catalog import MAPPED, UNMAPPED
from revshare.config import Config
from revshare.contracts import Contract
from revshare.diffs import restatement_diff, revision_diff
from revshare.discrepancies import MATCHED, explain
from revshare.grain import conform
from revshare.periods import Period
from revshare.reconcile_sql import (
    FX_JOIN,
    GUARANTEE_SQL,
    LINES_SQL,
    UNMAPPED_SQL,
    grain_sql,
)
from revshare.schema import MONEY_SQL, RATE_SQL


@dataclass(frozen=True)
class PartnerResult:
    partner: str
    grain: pa.Table  # one row per (model, unit) and per unmapped SKU, matched or not
    #: Parquet file of the billing and statement lines behind every discrepancy (revshare.lines)
    lines: Path
    terms: dict  # the contract terms as applied (rule, blended rate, guarantee, FX policy)
    revisions: pa.Table  # statement lines changed since the previous revision
    #: Parquet file of the billing lines added/removed/changed behind each restatement; None
    #: for a partner without a billing export.
    restated: Path | None
    #: Statement-only partners: each check family, whether it applied and how it came out.
    checks: tuple[dict, ...] = ()


def _terms(con: duckdb.DuckDBPyConnection, config: Config, partner: str, period: Period) -> dict:
    """Contract terms and FX rates as small tables the SQL joins; returns what the report
    shows of them (rule, blended rate, revenue the tiers saw, guarantee, FX policy)."""
    c = config.contract_for(partner, period)
    con.register("_categories", pa.table({"category": c.charge_categories}))
    ccys = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT BillingCurrency FROM billing UNION "
            "SELECT DISTINCT BillingCurrency FROM prev_billing ORDER BY 1"
        ).fetchall()
    ]
    if c.fx_policy == "daily":
        days = con.execute(
            f"SELECT DISTINCT BillingCurrency, CAST(ChargePeriodStart AS DATE) FROM billing "
            f"WHERE BillingCurrency <> '{c.currency}' UNION SELECT DISTINCT BillingCurrency, "
            f"CAST(ChargePeriodStart AS DATE) FROM prev_billing WHERE BillingCurrency <> "
            f"'{c.currency}' ORDER BY ALL"
        ).fetchall()
        fx = [
            (c.currency, None, Decimal(1)),
            *((x, d, config.fx.rate_on(d, x, c.currency)) for x, d in days),
        ]
    else:
        fx = [(x, None, config.fx.rate(period, x, c.currency)) for x in ccys]
    con.register("_fx", pa.table({
        "currency": [f[0] for f in fx], "day": pa.array([f[1] for f in fx], pa.date32()),
        "rate": pa.array([f[2] for f in fx], pa.decimal128(18, 10))}))  # fmt: skip
    register_statement_fx(con, config, period, c)
    revenue = con.execute(f"""
        SELECT coalesce(sum(BilledCost * f.rate), 0) FROM billing b JOIN _fx f ON {FX_JOIN}
        WHERE x_CatalogStatus IN ('{MAPPED}', '{UNMAPPED}')
          AND ChargeCategory IN (SELECT category FROM _categories)""").fetchone()[0]
    base = register_rates(con, config, c, revenue)
    return {
        "partner": partner,
        "rule": terms.describe(c),
        "revenue_for_tiers": revenue,
        "blended_rate": base,
        "minimum_guarantee": c.minimum_guarantee,
        "fx_policy": c.fx_policy,
        "fx_rates": _rates_used(fx, c.currency),
        "currency": c.currency,
        "charge_categories": ", ".join(c.charge_categories),
        "tolerance": f"max({c.tolerance.absolute} {c.currency}, {c.tolerance.relative} x expected)",
    }


def register_statement_fx(
    con: duckdb.DuckDBPyConnection, config: Config, period: Period, c: Contract
) -> None:
    """``_fx_stmt``: each statement currency's month-end rate into the contract currency."""
    ccys = [
        r[0] for r in con.execute("SELECT DISTINCT Currency FROM statements ORDER BY 1").fetchall()
    ]
    con.register("_fx_stmt", pa.table({
        "currency": ccys,
        "rate": pa.array([config.fx.rate(period, x, c.currency) for x in ccys],
                         pa.decimal128(18, 10))}))  # fmt: skip


def register_rates(
    con: duckdb.DuckDBPyConnection, config: Config, c: Contract, revenue: Decimal
) -> Decimal:
    """``_terms`` (each model's rate for the month's ``revenue``) and ``_k`` (tolerances,
    currency, blended rate, guarantee); returns the blended rate."""
    models = [*config.model_ids, None]
    con.register("_terms", pa.table({
        "model": models,
        "share_rate": pa.array([terms.model_rate(c, m, revenue) for m in models],
                               pa.decimal128(20, terms.RATE_PLACES))}))  # fmt: skip
    base = terms.model_rate(c, None, revenue)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _k AS SELECT {lit_dec(c.tolerance.absolute)} AS tol_abs,"
        f" {lit_dec(c.tolerance.relative)} AS tol_rel, '{c.currency}' AS ccy,"
        f" CAST('{base}' AS DECIMAL(20,{terms.RATE_PLACES})) AS base_rate,"
        f" CAST({lit_money(c.minimum_guarantee)} AS {MONEY_SQL}) AS mg"
    )
    return base


def _rates_used(fx: list[tuple], reporting: str) -> str:
    """The conversion rates a run booked, for the report: one per currency at month end,
    or the range of daily rates."""
    by_ccy: dict[str, list[Decimal]] = {}
    for ccy, _, rate in fx:
        if ccy != reporting:
            by_ccy.setdefault(ccy, []).append(rate)
    parts = [
        f"{ccy} {min(r):.4f}" + (f"–{max(r):.4f}" if max(r) != min(r) else "")
        for ccy, r in sorted(by_ccy.items())
    ]
    return ", ".join(parts) or "none needed"


def lit_dec(x: Decimal) -> str:
    return f"CAST('{x}' AS {RATE_SQL})"


def lit_money(x: Decimal | None) -> str:
    return "NULL" if x is None else f"'{x}'"


def reconcile_partner(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    partner: str,
    period: Period,
    out: Path,
) -> PartnerResult:
    """Reconcile the views ``billing``, ``statements`` and ``prev_billing`` (each one
    partner's canonical rows; ``prev_billing`` empty unless an earlier run used another
    billing snapshot). Returns the grain table; the lines behind each discrepancy and behind
    each restatement are written to files in the folder ``out``."""
    shown = _terms(con, config, partner, period)
    rules = config.matching.for_partner(partner)
    shown["matching"] = rules.describe()
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _g AS
      SELECT *, CAST(NULL AS {MONEY_SQL}) AS computed_share,
        CAST(NULL AS {MONEY_SQL}) AS minimum_guarantee, CAST(NULL AS {MONEY_SQL}) AS at_stake,
        'billing' AS basis
      FROM (SELECT * FROM ({grain_sql(rules.by_region)})
            UNION ALL BY NAME SELECT * FROM ({UNMAPPED_SQL}))""")
    if rules.partner_total:
        con.execute(f"INSERT INTO _g BY NAME {GUARANTEE_SQL}")
    con.execute(f"""
      CREATE OR REPLACE TEMP TABLE _grain AS
      SELECT '{partner}' AS partner, '{period}' AS period, *,
        md5(concat_ws('|', '{period}', '{partner}', type, model_id, unit, sku)) AS discrepancy_id
      FROM _g ORDER BY type = '{MATCHED}', abs(amount) DESC, model_id, unit, sku""")
    grain = con.execute("SELECT * FROM _grain").to_arrow_table()
    explanations = [
        explain(r) if r["type"] != MATCHED else ""
        for r in grain.select(_EXPLAIN_COLUMNS).to_pylist()
    ]
    grain = conform(grain.append_column("explanation", pa.array(explanations, pa.string())))
    lines = line_files.write(con, LINES_SQL, out / line_files.BEHIND)
    restated = restatement_diff(con, out / line_files.RESTATED)
    return PartnerResult(partner, grain, lines, shown, revision_diff(con), restated)


_EXPLAIN_COLUMNS = [
    "type", "partner", "model_id", "unit", "sku", "currency", "amount", "billed_tokens",
    "reported_tokens", "billed_revenue", "reported_revenue", "expected_share", "reported_share",
    "share_rate", "shift_days", "shift_tokens", "implied_fx", "fx_rate", "foreign_currency",
    "statement_currency", "duplicate_lines", "previous_snapshot", "previous_revenue",
    "computed_share", "minimum_guarantee",
]  # fmt: skip
