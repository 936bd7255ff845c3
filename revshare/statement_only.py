"""Checks for a partner with no billing export (a statement-only partner).

Without billing there is nothing to hold the statement to line by line, so it is checked
against what can be known: its own arithmetic (quantity x price = revenue, revenue x the
contract's rate = share, lines add up to the stated total), the contract (tiers, minimum
guarantee), the models the partner is licensed to serve, the partner's own history (revenue
moving beyond a band, a model that vanished, a price per token that moved), and the licensor's
own usage through the partner (probe usage), which the statement must cover.

Every failure is a typed discrepancy row in the same grain table as billing partners. Rows
whose money follows from the statement (arithmetic, total, guarantee, missing probe usage)
carry it in ``amount`` and add up to the partner's net variance; history and completeness
flags cannot know the money, so ``amount`` stays empty and ``at_stake`` holds an estimate from
last month where one exists. Line sums run in DuckDB; the ratios of the history checks are
taken in Python Decimal on the aggregated rows (a few per model), since DuckDB divides
DECIMALs in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from revshare import lines as line_files
from revshare import terms
from revshare.config import Config
from revshare.diffs import revision_diff
from revshare.discrepancies import MATCHED, Kind, explain
from revshare.grain import conform
from revshare.periods import Period
from revshare.reconcile import GUARANTEE_SQL, PartnerResult, register_rates, register_statement_fx
from revshare.schema import BILLING_SCHEMA, MONEY_SCALE
from revshare.sqlutil import dict_rows
from revshare.statement_only_sql import GRAIN_SQL, LINES_SQL, PROBE_SQL, REVENUE_SQL, TOTAL_SQL

_MONEY = pa.decimal128(38, MONEY_SCALE)
_Q = Decimal(1).scaleb(-MONEY_SCALE)
MILLION = Decimal(1_000_000)

#: Check families, in the order the report lists them, with what each holds the statement to.
CHECKS = {
    "arithmetic": "quantity × unit price = revenue; revenue × contract rate = share; "
    "lines add up to the stated total",
    "contract": "tiers and minimum guarantee applied to the statement's revenue",
    "completeness": "every licensed model reported",
    "history": "revenue, models and prices against the previous month",
    "probe": "the licensor's own usage through the partner appears in the statement",
}
_FAMILY = {
    Kind.REVENUE_ARITHMETIC: "arithmetic", Kind.SHARE_MISCALCULATED: "arithmetic",
    Kind.TOTAL_MISMATCH: "arithmetic", Kind.MINIMUM_GUARANTEE: "contract",
    Kind.LICENSED_MODEL_MISSING: "completeness", Kind.MODEL_VANISHED: "history",
    Kind.VOLUME_CHANGE: "history", Kind.PRICE_CHANGE: "history",
    Kind.PROBE_USAGE_MISSING: "probe",
}  # fmt: skip


@dataclass(frozen=True)
class History:
    """The partner's reported grain rows of its latest recorded run of ``period``."""

    period: str
    rows: list[dict[str, Any]]


def _q(x: Decimal) -> Decimal:
    return x.quantize(_Q)


def check_partner(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    partner: str,
    period: Period,
    *,
    history: History | None,
    probe: bool,
    out: Path,
) -> PartnerResult:
    """Check the view ``statements`` (and ``probe``, canonical billing rows of the licensor's
    own usage, when ``probe``) for a statement-only partner; the lines behind each finding
    are written to a file in the folder ``out``."""
    c = config.contract_for(partner, period)
    register_statement_fx(con, config, period, c)
    revenue = con.execute(REVENUE_SQL).fetchone()[0]
    base = register_rates(con, config, c, revenue)
    if not probe:
        con.register("_no_probe", BILLING_SCHEMA.empty_table())
        con.execute("CREATE OR REPLACE VIEW probe AS SELECT * FROM _no_probe")
    ccys = [r[0] for r in con.execute("SELECT DISTINCT BillingCurrency FROM probe").fetchall()]
    con.register("_fx_probe", pa.table({
        "currency": ccys,
        "rate": pa.array([config.fx.rate(period, x, c.currency) for x in ccys],
                         pa.decimal128(18, 10))}))  # fmt: skip

    grain = dict_rows(con, GRAIN_SQL)
    rows = [{**r, "check_name": "arithmetic"} for r in grain]
    rows += [{**r, "check_name": "arithmetic"} for r in dict_rows(con, TOTAL_SQL)]
    con.register(
        "_g",
        pa.Table.from_pylist(
            [{"expected_share": r["expected_share"]} for r in grain],
            pa.schema([("expected_share", _MONEY)]),
        ),
    )
    if config.matching.for_partner(partner).partner_total:
        rows += [{**r, "check_name": "contract"} for r in dict_rows(con, GUARANTEE_SQL)]
    ccy = c.currency
    probe_rows = dict_rows(con, PROBE_SQL) if probe else []
    rows += _probe_rows(grain, probe_rows, c.tolerance.relative, ccy)
    rows += _completeness_rows(grain, c.models, history, probe_rows, ccy)
    if history is not None:
        bands = config.checks.for_partner(partner).history
        rows += _history_rows(grain, history, bands.volume, bands.price, base, ccy)

    table = _grain_table(con, rows, partner, period)
    explanations = [explain(r) if r["type"] != MATCHED else "" for r in table.to_pylist()]
    table = conform(table.append_column("explanation", pa.array(explanations, pa.string())))
    con.register("_grain", table)
    lines = line_files.write(con, LINES_SQL, out / line_files.BEHIND)
    shown = {
        "partner": partner,
        "rule": terms.describe(c),
        "revenue_for_tiers": revenue,
        "blended_rate": base,
        "minimum_guarantee": c.minimum_guarantee,
        "fx_policy": "month_end (statement)",
        "fx_rates": "statement currencies at month end",
        "currency": ccy,
        "charge_categories": "as reported",
        "tolerance": f"max({c.tolerance.absolute} {ccy}, {c.tolerance.relative} x expected)",
        "matching": "statement only: no billing export",
    }
    checks = _checks(table.to_pylist(), grain, c.models, history, probe, probe_rows)
    return PartnerResult(partner, table, lines, shown, revision_diff(con), None, tuple(checks))


def _probe_rows(
    grain: list[dict], probe: list[dict], tol_rel: Decimal, ccy: str
) -> list[dict[str, Any]]:
    """Probe usage above what the statement reports for its (model, unit) is provably missing:
    priced at the statement's own revenue per token, or at what the licensor was charged when
    the statement has no line for it; the share on it is owed."""
    reported = {(g["model_id"], g["unit"]): g for g in grain}
    out = []
    for p in probe:
        g = reported.get((p["model_id"], p["unit"]))
        tokens = g["reported_tokens"] if g else Decimal(0)
        missing = p["probe_tokens"] - tokens
        if missing <= tol_rel * p["probe_tokens"]:
            continue
        if g and tokens:
            value, rate = g["computed_revenue"] * missing / tokens, g["share_rate"]
        else:
            value, rate = p["probe_revenue"] * missing / p["probe_tokens"], None
        out.append({
            **{k: p[k] for k in ("model_id", "unit", "probe_tokens", "probe_revenue")},
            "reported_tokens": tokens, "share_rate": rate, "currency": ccy,
            "probe_snapshot": p["probe_snapshot"], "_value": value,
            "type": Kind.PROBE_USAGE_MISSING, "check_name": "probe",
        })  # fmt: skip
    return out


def _completeness_rows(
    grain: list[dict],
    licensed: list[str] | None,
    history: History | None,
    probe: list[dict],
    ccy: str,
) -> list[dict[str, Any]]:
    """A licensed model with no line at all. One the partner reported last month is a vanished
    model (a history flag, with last month's share as the estimate); one our own usage shows
    is already missing probe usage, with its money."""
    reported = {g["model_id"] for g in grain}
    before = {h["model_id"] for h in history.rows} if history else set()
    used = {p["model_id"] for p in probe}
    out = []
    for m in licensed or []:
        if m not in reported | before | used:
            out.append({"model_id": m, "currency": ccy, "check_name": "completeness",
                        "type": Kind.LICENSED_MODEL_MISSING})  # fmt: skip
    return out


def _history_rows(
    grain: list[dict],
    history: History,
    volume_band: Decimal,
    price_band: Decimal,
    base_rate: Decimal,
    ccy: str,
) -> list[dict[str, Any]]:
    now = {(g["model_id"], g["unit"]): g for g in grain}
    then = {(h["model_id"], h["unit"]): h for h in history.rows}
    out: list[dict[str, Any]] = []
    common = {"currency": ccy, "check_name": "history", "previous_period": history.period}
    reported = {g["model_id"] for g in grain}
    for model in sorted({m for m, _ in then} - reported):
        share = sum((h["reported_share"] for (m, _), h in then.items() if m == model), Decimal(0))
        out.append({**common, "model_id": model, "history_share": share, "at_stake": -share,
                    "type": Kind.MODEL_VANISHED})  # fmt: skip
    for key, g in sorted(now.items()):
        h = then.get(key)
        if not h or not h["reported_tokens"] or not g["reported_tokens"]:
            continue
        # Prices from quantity x unit price where given, so a revenue typo is not a price move.
        price = g["computed_revenue"] / g["reported_tokens"]
        before = h["priced_revenue"] / h["reported_tokens"]
        if before and abs(price - before) > price_band * abs(before):
            rate = g["share_rate"] or base_rate
            stake = (price - before) * g["reported_tokens"] * rate
            out.append({
                **common, "model_id": key[0], "unit": key[1],
                "reported_tokens": g["reported_tokens"], "computed_revenue": g["computed_revenue"],
                "price_per_mtok": _q(price * MILLION),
                "history_price_per_mtok": _q(before * MILLION), "at_stake": stake,
                "type": Kind.PRICE_CHANGE,
            })  # fmt: skip
    revenue = sum((g["computed_revenue"] for g in grain), Decimal(0))
    share = sum((g["expected_share"] for g in grain), Decimal(0))
    revenue_then = sum((h["priced_revenue"] for h in then.values()), Decimal(0))
    share_then = sum((h["reported_share"] for h in then.values()), Decimal(0))
    if revenue_then and abs(revenue - revenue_then) > volume_band * abs(revenue_then):
        out.append({**common, "computed_revenue": revenue, "history_revenue": revenue_then,
                    "band": volume_band, "at_stake": share - share_then,
                    "type": Kind.VOLUME_CHANGE})  # fmt: skip
    return out


def _grain_table(
    con: duckdb.DuckDBPyConnection, rows: list[dict], partner: str, period: Period
) -> pa.Table:
    """Rows of every shape into one table; money columns exact, amounts from ``_value``."""
    for r in rows:
        r["type"] = str(r["type"])
        for col in _ALWAYS:
            r.setdefault(col, None)
        value = r.pop("_value", None)
        if value is not None:  # missing probe usage: share on the missing value is owed
            rate = r["share_rate"] if r["share_rate"] is not None else _base(con)
            r["share_rate"] = rate
            r["expected_share"] = _q(value * rate)
            r["amount"] = -r["expected_share"]
        if r["type"] in (Kind.MODEL_VANISHED, Kind.VOLUME_CHANGE, Kind.PRICE_CHANGE):
            r["at_stake"] = _q(r["at_stake"])
    con.register("_rows", _to_arrow(rows))
    return con.execute(f"""
        SELECT '{partner}' AS partner, '{period}' AS period, *, 'statement' AS basis,
          md5(concat_ws('|', '{period}', '{partner}', type, model_id, unit, statement_id))
            AS discrepancy_id
        FROM _rows
        ORDER BY type = '{MATCHED}', abs(coalesce(amount, at_stake, 0)) DESC, type,
          model_id, unit, statement_id""").to_arrow_table()


def _base(con: duckdb.DuckDBPyConnection) -> Decimal:
    return con.execute("SELECT base_rate FROM _k").fetchone()[0]


#: Columns the ordering and ids below need on every row (``conform`` adds the rest).
_ALWAYS = ("model_id", "unit", "amount", "at_stake", "statement_id")

_TYPES = {
    "amount": _MONEY, "at_stake": _MONEY, "expected_share": _MONEY, "reported_share": _MONEY,
    "reported_revenue": _MONEY, "computed_revenue": _MONEY, "history_revenue": _MONEY,
    "history_share": _MONEY, "probe_revenue": _MONEY, "stated_total": _MONEY,
    "lines_total": _MONEY, "minimum_guarantee": _MONEY, "computed_share": _MONEY,
    "price_per_mtok": _MONEY, "history_price_per_mtok": _MONEY,
    "reported_tokens": pa.decimal128(38, 12), "probe_tokens": pa.decimal128(38, 12),
    "share_rate": pa.decimal128(20, terms.RATE_PLACES), "band": pa.decimal128(18, 10),
}  # fmt: skip


def _to_arrow(rows: list[dict]) -> pa.Table:
    names = sorted({k for r in rows for k in r})
    cols = {}
    for n in names:
        values = [r.get(n) for r in rows]
        typ = _TYPES.get(n)
        if typ is None:  # text, counts, ids; a column of NULLs only is text
            arr = pa.array(values)
            cols[n] = arr.cast(pa.string()) if pa.types.is_null(arr.type) else arr
        elif pa.types.is_decimal(typ):
            scale = typ.scale
            cols[n] = pa.array(
                [None if v is None else Decimal(v).quantize(Decimal(1).scaleb(-scale)) for v in
                 values], typ)  # fmt: skip
        else:
            cols[n] = pa.array(values, typ)
    return pa.table(cols)


def _checks(
    table: list[dict],
    grain: list[dict],
    licensed: list[str] | None,
    history: History | None,
    probe: bool,
    probe_rows: list[dict],
) -> list[dict[str, str]]:
    """What the report lists for the partner: each check family, whether it applied, passed
    or failed, and on what."""
    failed: dict[str, int] = {}
    for r in table:
        if r["type"] != MATCHED:
            fam = _FAMILY.get(r["type"], "arithmetic")
            failed[fam] = failed.get(fam, 0) + 1
    priced = sum(g["priced_lines"] for g in grain)
    lines = sum(g["statement_lines"] for g in grain)
    totals = sum(1 for r in table if r.get("stated_total") is not None)
    reported = {g["model_id"] for g in grain}
    detail = {
        "arithmetic": f"{priced} of {lines} line(s) carry a unit price; "
        f"{totals} statement total(s) stated",
        "contract": "guarantee and tiers applied to the statement's own revenue",
        "completeness": f"{len(reported & set(licensed or ()))} of {len(licensed or ())} "
        "licensed model(s) reported",
        "history": f"against {history.period}" if history else "no earlier month recorded",
        "probe": f"{len(probe_rows)} (model, unit) of own usage"
        if probe
        else "no probe source configured",
    }
    applies = {
        "arithmetic": True,
        "contract": True,
        "completeness": licensed is not None,
        "history": history is not None,
        "probe": probe,
    }
    return [
        {
            "check": name,
            "what": what,
            "status": "not applicable"
            if not applies[name]
            else f"{failed[name]} failed"
            if name in failed
            else "passed",
            "detail": detail[name],
        }
        for name, what in CHECKS.items()
    ]
