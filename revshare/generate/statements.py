"""Partner statements derived from generated usage, with planted discrepancies and the truth.

Statements are aggregates (a few dozen lines per partner), so they are built as plain Python
records with exact Decimals; billing lines are only ever touched in DuckDB.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa

from revshare.config import Config
from revshare.db import connect
from revshare.periods import Period

CENT = Decimal("0.01")


def money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Plant:
    """One planted discrepancy: which grain, and how the statement (or billing) is bent."""

    type: str
    partner: str
    model: str | None
    unit: str | None
    sku: str | None = None
    factor: Decimal | None = None  # quantity / revenue / share multiplier, or the wrong FX rate
    phase: str = "initial"


PLANTS: tuple[Plant, ...] = (
    Plant("missing_from_statement", "aws", "llama-3.1-8b", "output_tokens"),
    Plant("price_revenue_mismatch", "aws", "llama-4-maverick", "output_tokens",
          factor=Decimal("0.95")),
    Plant("unmapped_sku", "aws", None, None, sku="USE1-Llama3-2-90B-input-tokens"),
    Plant("restatement", "aws", "llama-3.3-70b", "input_tokens", phase="restated"),
    Plant("missing_from_billing", "gcp", "llama-3.1-405b", "input_tokens"),
    Plant("share_miscalculated", "gcp", "llama-3.3-70b", "output_tokens", factor=Decimal("0.12")),
    Plant("duplicate_lines", "gcp", "llama-4-scout", "output_tokens"),
    Plant("quantity_mismatch", "azure", "llama-4-scout", "input_tokens", factor=Decimal("0.90")),
    Plant("currency_fx_mismatch", "azure", "llama-3.3-70b", "input_tokens", factor=Decimal("1.20")),
    Plant("period_shift", "snowflake", "llama-4-maverick", "tokens"),
)  # fmt: skip


def plant(type_: str) -> Plant:
    return next(p for p in PLANTS if p.type == type_)


def _aggregate(lines: pa.Table, period: Period, shifted_model: str | None) -> list[dict]:
    """Licensed, mapped usage summed per (model, region, unit, billing currency); the last
    day of ``shifted_model`` is left out (the partner moved it to next month's statement)."""
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
        SELECT _model, region, _unit, currency, sum(_tokens)::HUGEINT, sum(cost)
        FROM l WHERE kind = 'usage' AND _model IS NOT NULL {cut}
        GROUP BY ALL ORDER BY ALL""").fetchall()
    return [
        dict(zip(("model", "region", "unit", "ccy", "tokens", "cost"), r, strict=True))
        for r in rows
    ]


def statement_lines(partner: str, lines: pa.Table, period: Period, config: Config) -> list[dict]:
    contract = config.contract_for(partner, period)
    shift, fx_plant = plant("period_shift"), plant("currency_fx_mismatch")
    agg = _aggregate(lines, period, shift.model if shift.partner == partner else None)
    out: dict[tuple[str, str, str], dict] = {}
    for a in agg:
        rate = config.fx.rate(period, a["ccy"], contract.currency)
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
        share_rate = contract.model_rates.get(model, contract.share_rate)
        revenue = money(v["revenue"])
        result.append(
            {
                "model_id": model,
                "region": region,
                "unit": unit,
                "tokens": v["tokens"],
                "gross_revenue": revenue,
                "share_rate": share_rate,
                "share_amount": money(revenue * share_rate),
                "currency": contract.currency,
            }
        )
    return _bend(partner, result, contract.share_rate)


def _bend(partner: str, lines: list[dict], rate: Decimal) -> list[dict]:
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
    dup = plant("duplicate_lines")
    firsts = [ln for ln in out if grain(dup, ln)][:1]
    out.extend(firsts)
    mfb = plant("missing_from_billing")
    if mfb.partner == partner:
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


def expected_share(
    lines: pa.Table, period: Period, config: Config, partner: str, where: str
) -> Decimal:
    """What the contract says is owed for the usage lines matching ``where``."""
    contract = config.contract_for(partner, period)
    con = connect()
    con.register("l", lines)
    total = Decimal(0)
    for model, ccy, cost in con.execute(
        f"SELECT _model, currency, sum(cost) FROM l WHERE kind = 'usage' AND {where} GROUP BY ALL"
    ).fetchall():
        rate = contract.model_rates.get(model, contract.share_rate)
        total += cost * config.fx.rate(period, ccy, contract.currency) * rate
    return total
