"""The discrepancy taxonomy: each type, and the sentence finance reads for it."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class Kind(StrEnum):
    MISSING_FROM_STATEMENT = "missing_from_statement"
    MISSING_FROM_BILLING = "missing_from_billing"
    QUANTITY_MISMATCH = "quantity_mismatch"
    PRICE_REVENUE_MISMATCH = "price_revenue_mismatch"
    SHARE_MISCALCULATED = "share_miscalculated"
    CURRENCY_FX_MISMATCH = "currency_fx_mismatch"
    UNMAPPED_SKU = "unmapped_sku"
    PERIOD_SHIFT = "period_shift"
    DUPLICATE_LINES = "duplicate_lines"
    RESTATEMENT = "restatement"
    MINIMUM_GUARANTEE = "minimum_guarantee"
    # Statement-only partners (no billing export): the statement against itself, the
    # contract, the licensed models, the partner's history and the licensor's own usage.
    REVENUE_ARITHMETIC = "revenue_arithmetic"
    TOTAL_MISMATCH = "total_mismatch"
    LICENSED_MODEL_MISSING = "licensed_model_missing"
    MODEL_VANISHED = "model_vanished"
    VOLUME_CHANGE = "volume_change"
    PRICE_CHANGE = "price_change"
    PROBE_USAGE_MISSING = "probe_usage_missing"


MATCHED = "matched"

TITLES: dict[str, str] = {
    Kind.MISSING_FROM_STATEMENT: "Missing from statement",
    Kind.MISSING_FROM_BILLING: "Missing from billing",
    Kind.QUANTITY_MISMATCH: "Quantity mismatch",
    Kind.PRICE_REVENUE_MISMATCH: "Price / revenue mismatch",
    Kind.SHARE_MISCALCULATED: "Share miscalculated",
    Kind.CURRENCY_FX_MISMATCH: "Currency or FX mismatch",
    Kind.UNMAPPED_SKU: "Unmapped SKU",
    Kind.PERIOD_SHIFT: "Period shift",
    Kind.DUPLICATE_LINES: "Duplicate lines",
    Kind.RESTATEMENT: "Restatement",
    Kind.MINIMUM_GUARANTEE: "Minimum guarantee top-up",
    Kind.REVENUE_ARITHMETIC: "Quantity × price ≠ revenue",
    Kind.TOTAL_MISMATCH: "Lines do not add up to the total",
    Kind.LICENSED_MODEL_MISSING: "Licensed model not reported",
    Kind.MODEL_VANISHED: "Model vanished since last month",
    Kind.VOLUME_CHANGE: "Revenue moved beyond the band",
    Kind.PRICE_CHANGE: "Price per token moved",
    Kind.PROBE_USAGE_MISSING: "Our own usage missing",
}

#: Types whose money cannot be known from the statement: ``amount`` stays empty (they are not
#: part of the net variance) and ``at_stake`` holds an estimate where one can be made.
FLAGS = frozenset({Kind.LICENSED_MODEL_MISSING, Kind.MODEL_VANISHED, Kind.VOLUME_CHANGE,
                   Kind.PRICE_CHANGE})  # fmt: skip


def _n(x: Decimal | int | None, places: int = 2) -> str:
    if x is None:
        return "n/a"
    return f"{Decimal(x):,.{places}f}"


def explain(row: dict) -> str:
    """One sentence, from the figures on the row, saying what differs and by how much."""
    k, ccy = row["type"], row["currency"]
    amt = f"{_n(row['amount'])} {ccy}"
    who = f"{row['partner']} {row.get('model_id') or ''} {row.get('unit') or ''}".strip()
    bt, rt = row.get("billed_tokens"), row.get("reported_tokens")
    br, rr = row.get("billed_revenue"), row.get("reported_revenue")
    if k == Kind.MISSING_FROM_STATEMENT:
        return (
            f"Billing shows {_n(bt, 0)} tokens and {_n(br)} {ccy} revenue for {who}, but the "
            f"statement has no line for it; share owed {_n(row['expected_share'])} {ccy}."
        )
    if k == Kind.MISSING_FROM_BILLING:
        return (
            f"The statement reports {_n(rt, 0)} tokens and {_n(rr)} {ccy} for {who}, but "
            f"the billing export has no such usage; share claimed {amt}."
        )
    if k == Kind.QUANTITY_MISMATCH:
        return (
            f"Statement reports {_n(rt, 0)} tokens for {who}, billing shows {_n(bt, 0)}; "
            f"the share differs by {amt}."
        )
    if k == Kind.PERIOD_SHIFT:
        return (
            f"Statement for {who} is short by exactly the last {row.get('shift_days')} day(s) "
            f"of billed usage ({_n(row.get('shift_tokens'), 0)} tokens): usage reported in "
            f"the neighbouring month; {amt} this period."
        )
    if k == Kind.PRICE_REVENUE_MISMATCH:
        return (
            f"Quantities agree for {who}, but reported revenue {_n(rr)} {ccy} differs from "
            f"billed {_n(br)} {ccy}; share differs by {amt}."
        )
    if k == Kind.CURRENCY_FX_MISMATCH:
        if row.get("implied_fx") is not None:
            return (
                f"Quantities agree for {who}, but the {row['foreign_currency']} revenue was "
                f"converted at {_n(row['implied_fx'], 4)} instead of the month-end rate "
                f"{_n(row['fx_rate'], 4)}; share differs by {amt}."
            )
        if row.get("statement_currency") not in (None, ccy):
            return (
                f"Statement for {who} is in {row['statement_currency']}, the contract in "
                f"{ccy}; share differs by {amt} after conversion at month end."
            )
        return (
            f"Quantities agree for {who}, but revenue billed in several currencies converts "
            f"to {_n(br)} {ccy} at the contract's rates while the statement says {_n(rr)} "
            f"{ccy}; share differs by {amt}."
        )
    if k == Kind.SHARE_MISCALCULATED:
        return (
            f"Revenue agrees for {who} ({_n(br)} {ccy}), but the reported share "
            f"{_n(row['reported_share'])} is not the contract's {_n(row['share_rate'], 4)} "
            f"x revenue = {_n(row['expected_share'])}; difference {amt}."
        )
    if k == Kind.DUPLICATE_LINES:
        return (
            f"The statement repeats {row.get('duplicate_lines')} line(s) for {who}; without "
            f"the repeats it agrees with billing. Over-reported share {amt}."
        )
    if k == Kind.RESTATEMENT:
        return (
            f"Billing for {who} changed since snapshot {row.get('previous_snapshot')}: "
            f"revenue {_n(row.get('previous_revenue'))} -> {_n(br)} {ccy}. The statement "
            f"matches the earlier billing; share differs by {amt}."
        )
    if k == Kind.UNMAPPED_SKU:
        return (
            f"Billing has {_n(br)} {ccy} of the licensor's usage under SKU "
            f"'{row.get('sku')}', which the model catalog does not map; share at stake {amt}."
        )
    if k == Kind.MINIMUM_GUARANTEE:
        return (
            f"Usage earns {_n(row.get('computed_share'))} {ccy} of share, below the "
            f"contract's minimum monthly guarantee of {_n(row.get('minimum_guarantee'))} "
            f"{ccy}: a top-up of {_n(row['expected_share'])} {ccy} is owed ({amt})."
        )
    return _explain_statement_only(row, k, ccy, who, amt) or f"{k} for {who}: {amt}."


def _explain_statement_only(row: dict, k: str, ccy: str, who: str, amt: str) -> str | None:
    stake = f"{_n(row.get('at_stake'))} {ccy}"
    if k == Kind.REVENUE_ARITHMETIC:
        return (
            f"The statement's quantities and unit prices for {who} come to "
            f"{_n(row.get('computed_revenue'))} {ccy}, but it reports "
            f"{_n(row.get('reported_revenue'))} {ccy} of revenue; the share on the priced "
            f"revenue differs by {amt}."
        )
    if k == Kind.TOTAL_MISMATCH:
        return (
            f"Statement {row.get('statement_id')} states a total share of "
            f"{_n(row.get('stated_total'))} {ccy}, but its lines add up to "
            f"{_n(row.get('lines_total'))} {ccy}; difference {amt}."
        )
    if k == Kind.LICENSED_MODEL_MISSING:
        return (
            f"{who} is licensed to serve this model, but the statement has no line for it and "
            "no earlier month gives an estimate: ask the partner whether it was served."
        )
    if k == Kind.MODEL_VANISHED:
        return (
            f"{who} was reported in {row.get('previous_period')} (share "
            f"{_n(row.get('history_share'))} {ccy}) and is missing now; at stake, by last "
            f"month: {stake}."
        )
    if k == Kind.VOLUME_CHANGE:
        return (
            f"{row['partner']} reports {_n(row.get('computed_revenue'))} {ccy} of revenue, "
            f"against {_n(row.get('history_revenue'))} {ccy} in {row.get('previous_period')}: "
            f"a change beyond the ±{_n(row.get('band'), 2)} band; share moved by {stake}."
        )
    if k == Kind.PRICE_CHANGE:
        return (
            f"{who} is priced at {_n(row.get('price_per_mtok'), 4)} {ccy} per million tokens, "
            f"against {_n(row.get('history_price_per_mtok'), 4)} in "
            f"{row.get('previous_period')}; at last month's price the share would differ by "
            f"{stake}."
        )
    if k == Kind.PROBE_USAGE_MISSING:
        return (
            f"The licensor's own usage of {who} was {_n(row.get('probe_tokens'), 0)} tokens, "
            f"but the statement reports {_n(row.get('reported_tokens'), 0)}; the share on the "
            f"missing usage is {amt}."
        )
    return None
