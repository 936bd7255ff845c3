"""Partner statements derived from generated usage, with planted discrepancies and the truth.

Statements are aggregates (a few dozen lines per partner), so they are built as plain Python
records with exact Decimals; billing lines are only ever touched in DuckDB.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa

from revshare import terms
from revshare.config import Config, Contract
from revshare.db import connect
from revshare.periods import Period

CENT = Decimal("0.01")


def money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Plant:
    """One planted case: which grain, and how the statement (or billing) is bent."""

    type: str  # the discrepancy type the run must report ("matched" for boundary checks)
    partner: str
    model: str | None
    unit: str | None
    sku: str | None = None
    factor: Decimal | None = None  # quantity / revenue / share multiplier, or the wrong FX rate
    offset: Decimal | None = None  # statement share = exact expected share + offset
    phase: str = "initial"  # initial | restated (after --restate) | boundary (must NOT flag)


PLANTS: dict[str, Plant] = {
    "missing_from_statement": Plant("missing_from_statement", "aws", "llama-3.1-8b",
                                    "output_tokens"),
    "price_revenue_mismatch": Plant("price_revenue_mismatch", "aws", "llama-4-maverick",
                                    "output_tokens", factor=Decimal("0.95")),
    "unmapped_sku": Plant("unmapped_sku", "aws", None, None,
                          sku="USE1-Llama3-2-90B-input-tokens"),
    "restatement": Plant("restatement", "aws", "llama-3.3-70b", "input_tokens",
                         phase="restated"),
    "missing_from_billing": Plant("missing_from_billing", "gcp", "llama-3.1-405b",
                                  "input_tokens"),
    "share_miscalculated": Plant("share_miscalculated", "gcp", "llama-3.3-70b", "output_tokens",
                                 factor=Decimal("0.12")),
    # Edge cases: one cent over the contract's absolute tolerance is flagged; exactly at it
    # is not (|diff| <= tolerance passes).
    "just_over_tolerance": Plant("share_miscalculated", "gcp", "llama-4-maverick",
                                 "input_tokens", offset=Decimal("0.51")),
    "at_tolerance": Plant("matched", "gcp", "llama-3.1-8b", "output_tokens",
                          offset=Decimal("0.50"), phase="boundary"),
    "duplicate_lines": Plant("duplicate_lines", "gcp", "llama-4-scout", "output_tokens"),
    "quantity_mismatch": Plant("quantity_mismatch", "azure", "llama-4-scout", "input_tokens",
                               factor=Decimal("0.90")),
    "currency_fx_mismatch": Plant("currency_fx_mismatch", "azure", "llama-3.3-70b",
                                  "input_tokens", factor=Decimal("1.20")),
    "period_shift": Plant("period_shift", "snowflake", "llama-4-maverick", "tokens"),
    # The contract's guarantee binds: usage earns less than the minimum (config/contracts.yaml).
    "minimum_guarantee": Plant("minimum_guarantee", "snowflake", None, None),
}  # fmt: skip


def plant(name: str) -> Plant:
    return PLANTS[name]


def _aggregate(lines: pa.Table, period: Period, shifted_model: str | None) -> list[dict]:
    """Licensed, mapped usage per (model, region, unit, currency, day); the last day of
    ``shifted_model`` is left out (the partner moved it to next month's statement)."""
    con = connect()
    con.register("l", lines)
    cut = (
        (
            f"AND NOT (_model = '{shifted_model}' AND usage_start >= "
            f"TIMESTAMPTZ '{period.end.isoformat()}' - INTERVAL 1 DAY)"
        )
        if shifted_model
        else ""
    )
    rows = con.execute(f"""
        SELECT _model, region, _unit, currency, CAST(usage_start AS DATE),
               sum(_tokens)::HUGEINT, sum(cost)
        FROM l WHERE kind = 'usage' AND _model IS NOT NULL {cut}
        GROUP BY ALL ORDER BY ALL""").fetchall()
    keys = ("model", "region", "unit", "ccy", "day", "tokens", "cost")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _fx(config: Config, period: Period, contract: Contract, ccy: str, day: date) -> Decimal:
    if contract.fx_policy == "daily":
        return config.fx.rate_on(day, ccy, contract.currency)
    return config.fx.rate(period, ccy, contract.currency)


def in_scope_revenue(lines: pa.Table, period: Period, config: Config, partner: str) -> Decimal:
    """The month's revenue of the licensor's usage (mapped or not): what tiers are priced on."""
    contract = config.contract_for(partner, period)
    con = connect()
    con.register("l", lines)
    rows = con.execute(
        "SELECT currency, CAST(usage_start AS DATE), sum(cost) FROM l "
        "WHERE kind = 'usage' AND licensed GROUP BY ALL"
    ).fetchall()
    return sum((c * _fx(config, period, contract, x, d) for x, d, c in rows), Decimal(0))


def expected_share(
    lines: pa.Table, period: Period, config: Config, partner: str, where: str
) -> Decimal:
    """What the contract says is owed for the usage lines matching ``where``."""
    contract = config.contract_for(partner, period)
    total = in_scope_revenue(lines, period, config, partner)
    con = connect()
    con.register("l", lines)
    out = Decimal(0)
    for model, ccy, day, cost in con.execute(
        "SELECT _model, currency, CAST(usage_start AS DATE), sum(cost) FROM l "
        f"WHERE kind = 'usage' AND {where} GROUP BY ALL"
    ).fetchall():
        rate = terms.model_rate(contract, model, total)
        out += cost * _fx(config, period, contract, ccy, day) * rate
    return out


def statement_lines(partner: str, lines: pa.Table, period: Period, config: Config) -> list[dict]:
    """The partner's statement as it would compute it from its own usage, then bent."""
    contract = config.contract_for(partner, period)
    total = in_scope_revenue(lines, period, config, partner)
    shift, fx_plant = plant("period_shift"), plant("currency_fx_mismatch")
    agg = _aggregate(lines, period, shift.model if shift.partner == partner else None)
    out: dict[tuple[str, str, str], dict] = {}
    for a in agg:
        rate = _fx(config, period, contract, a["ccy"], a["day"])
        if (partner, a["model"], a["unit"]) == (
            fx_plant.partner,
            fx_plant.model,
            fx_plant.unit,
        ) and a["ccy"] != contract.currency:
            rate = fx_plant.factor
        line = out.setdefault(
            (a["model"], a["region"], a["unit"]), {"tokens": 0, "revenue": Decimal(0)}
        )
        line["tokens"] += a["tokens"]
        line["revenue"] += a["cost"] * rate
    result = []
    for (model, region, unit), v in sorted(out.items()):
        share_rate = terms.model_rate(contract, model, total)
        revenue = money(v["revenue"])
        result.append(
            {
                "model_id": model,
                "region": region,
                "unit": unit,
                "tokens": v["tokens"],
                "gross_revenue": revenue,
                "share_rate": share_rate.quantize(Decimal("0.000001")).normalize(),
                "share_amount": money(revenue * share_rate),
                "currency": contract.currency,
            }
        )
    return _bend(partner, result, lines, period, config)


def _bend(
    partner: str, lines: list[dict], billing: pa.Table, period: Period, config: Config
) -> list[dict]:
    """Apply the statement-side plants."""

    def grain(p: Plant, line: dict) -> bool:
        return p.partner == partner and (line["model_id"], line["unit"]) == (p.model, p.unit)

    out = []
    for line in lines:
        if grain(plant("missing_from_statement"), line):
            continue
        if grain(p := plant("quantity_mismatch"), line):
            line = {
                **line,
                "tokens": int(line["tokens"] * p.factor),
                "gross_revenue": money(line["gross_revenue"] * p.factor),
            }
            line["share_amount"] = money(line["gross_revenue"] * line["share_rate"])
        if grain(p := plant("price_revenue_mismatch"), line):
            line = {**line, "gross_revenue": money(line["gross_revenue"] * p.factor)}
            line["share_amount"] = money(line["gross_revenue"] * line["share_rate"])
        if grain(p := plant("share_miscalculated"), line):
            line = {**line, "share_amount": money(line["gross_revenue"] * p.factor)}
        out.append(line)
    for p in PLANTS.values():  # exact offsets from the exact expected share
        if p.offset is None or p.partner != partner:
            continue
        idx = [i for i, ln in enumerate(out) if grain(p, ln)]
        expected = expected_share(
            billing, period, config, partner, f"_model = '{p.model}' AND _unit = '{p.unit}'"
        )
        if expected != money(expected):
            raise ValueError(f"{p}: expected share {expected} is not cent-exact")
        reported = sum((out[i]["share_amount"] for i in idx), Decimal(0))
        out[idx[0]] = {
            **out[idx[0]],
            "share_amount": out[idx[0]]["share_amount"] + expected + p.offset - reported,
        }
    dup = plant("duplicate_lines")
    out.extend([ln for ln in out if grain(dup, ln)][:1])
    mfb = plant("missing_from_billing")
    if mfb.partner == partner:
        rate = config.contract_for(partner, period).share_rate or Decimal("0.15")
        out.append(
            {
                "model_id": mfb.model,
                "region": "us-central1",
                "unit": mfb.unit,
                "tokens": 50_000_000,
                "gross_revenue": Decimal("120.00"),
                "share_rate": rate,
                "share_amount": money(Decimal("120.00") * rate),
                "currency": "USD",
            }
        )
    return out


def write_statement(
    partner: str, period: Period, lines: list[dict], folder: Path, as_json: bool, unit_size: int
) -> Path:
    """Write one statement in the published format (docs/statement-format.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    sid = f"{partner.upper()}-{period.compact}-RS"
    header = {
        "statement_id": sid,
        "revision": 1,
        "issued_date": (period.end.date().replace(day=5)).isoformat(),
        "partner_id": partner,
        "period": str(period),
    }
    body = [
        {
            "model_id": ln["model_id"],
            "region": ln["region"],
            "unit": ln["unit"],
            "unit_size": unit_size,
            "quantity": str(Decimal(ln["tokens"]) / unit_size),
            "gross_revenue": str(ln["gross_revenue"]),
            "share_rate": str(ln["share_rate"]),
            "share_amount": str(ln["share_amount"]),
            "currency": ln["currency"],
        }
        for ln in lines
    ]
    if as_json:
        path = folder / f"{sid}-r1.json"
        path.write_text(json.dumps({**header, "currency": "USD", "lines": body}, indent=1))
    else:
        path = folder / f"{sid}-r1.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[*header, *body[0]])
            w.writeheader()
            w.writerows({**header, **b} for b in body)
    return path
