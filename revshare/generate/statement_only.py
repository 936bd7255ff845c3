"""Statement-only partners for the demo month: statements, probe usage and the ground truth.

These partners (Groq, Nvidia, Dell in the example config) have no billing export, so the
month is a handful of statement lines per partner, built as exact Decimals. For the history
checks, the previous month is written too, as a clean baseline (no plants); the e2e test
reconciles it first so the ledger holds it. Every planted case is listed with its money,
computed here from the figures written, never by the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from revshare import terms
from revshare.config import Config
from revshare.periods import Period

CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)


def _money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Line:
    model: str
    unit: str
    mtok: Decimal  # quantity, in millions of tokens
    price: Decimal  # per million tokens


#: The baseline month per partner: (model, unit, millions of tokens, price per million).
BASE: dict[str, list[Line]] = {
    "groq": [
        Line("llama-3.3-70b", "input_tokens", Decimal("4200.125"), Decimal("0.59")),
        Line("llama-3.3-70b", "output_tokens", Decimal("1650.5"), Decimal("0.79")),
        Line("llama-4-scout", "input_tokens", Decimal("9800"), Decimal("0.11")),
        Line("llama-4-scout", "output_tokens", Decimal("2400.25"), Decimal("0.34")),
        Line("llama-3.1-8b", "input_tokens", Decimal("15000"), Decimal("0.05")),
        Line("llama-3.1-8b", "output_tokens", Decimal("6100"), Decimal("0.08")),
    ],
    "nvidia": [
        Line("llama-3.3-70b", "input_tokens", Decimal("3100"), Decimal("0.60")),
        Line("llama-3.3-70b", "output_tokens", Decimal("1200"), Decimal("0.80")),
        Line("llama-4-scout", "input_tokens", Decimal("5200"), Decimal("0.12")),
        Line("llama-4-scout", "output_tokens", Decimal("1900"), Decimal("0.36")),
        Line("llama-4-maverick", "input_tokens", Decimal("2600"), Decimal("0.25")),
        Line("llama-4-maverick", "output_tokens", Decimal("1400"), Decimal("0.85")),
        Line("llama-3.1-405b", "input_tokens", Decimal("700"), Decimal("2.40")),
        Line("llama-3.1-405b", "output_tokens", Decimal("300"), Decimal("2.40")),
        Line("llama-3.1-8b", "input_tokens", Decimal("8000"), Decimal("0.05")),
        Line("llama-3.1-8b", "output_tokens", Decimal("3000"), Decimal("0.08")),
    ],
    "dell": [
        Line("llama-3.3-70b", "input_tokens", Decimal("21000"), Decimal("0.60")),
        Line("llama-3.3-70b", "output_tokens", Decimal("9000"), Decimal("0.80")),
        Line("llama-4-scout", "input_tokens", Decimal("30000"), Decimal("0.12")),
        Line("llama-4-scout", "output_tokens", Decimal("8000"), Decimal("0.36")),
        Line("llama-3.1-8b", "input_tokens", Decimal("40000"), Decimal("0.05")),
        Line("llama-3.1-8b", "output_tokens", Decimal("12000"), Decimal("0.08")),
    ],
}
PARTNERS = tuple(BASE)
#: The plants, by partner (the current month only; the baseline month is clean).
GROQ_UNDER_REVENUE = ("llama-3.3-70b", "output_tokens", Decimal("0.90"))
GROQ_TOTAL_SHORT = Decimal("25.00")
GROQ_PROBE_OMITTED = ("llama-3.1-8b", "output_tokens")  # dropped from the statement
NVIDIA_WRONG_RATE = Decimal("0.10")  # the lower tier, although revenue reaches the upper one
NVIDIA_VANISHED = "llama-3.1-405b"
NVIDIA_PRICE_CUT = ("llama-4-maverick", "output_tokens", Decimal("0.80"))
DELL_VOLUME = Decimal("0.40")  # the month's volume against the baseline
DELL_NEVER_REPORTED = "llama-4-maverick"
#: Probe requests per month for Groq, and tokens per request, per (model, unit).
PROBE = {("llama-3.1-8b", "output_tokens"): (200, 15_000_000),
         ("llama-3.3-70b", "input_tokens"): (100, 500_000)}  # fmt: skip


def _month(pid: str, planted: bool) -> list[Line]:
    lines = list(BASE[pid])
    if not planted:
        return lines
    if pid == "groq":
        lines = [ln for ln in lines if (ln.model, ln.unit) != GROQ_PROBE_OMITTED]
    if pid == "nvidia":
        m, u, f = NVIDIA_PRICE_CUT
        lines = [
            Line(ln.model, ln.unit, ln.mtok, ln.price * f) if (ln.model, ln.unit) == (m, u) else ln
            for ln in lines
            if ln.model != NVIDIA_VANISHED
        ]
    if pid == "dell":
        lines = [Line(ln.model, ln.unit, ln.mtok * DELL_VOLUME, ln.price) for ln in lines]
    return lines


def _records(pid: str, period: Period, config: Config, planted: bool) -> list[dict]:
    """Statement lines with exact figures; revenue and share rounded to cents as a partner
    would print them."""
    contract = config.contract_for(pid, period)
    lines = _month(pid, planted)
    revenue = sum((ln.mtok * ln.price for ln in lines), Decimal(0))
    rate = terms.effective_rate(contract, revenue)
    if planted and pid == "nvidia":
        rate = NVIDIA_WRONG_RATE
    out = []
    for ln in lines:
        gross = ln.mtok * ln.price
        if planted and pid == "groq" and (ln.model, ln.unit) == GROQ_UNDER_REVENUE[:2]:
            gross = gross * GROQ_UNDER_REVENUE[2]
        gross = _money(gross)
        out.append({"model_id": ln.model, "unit": ln.unit, "quantity": ln.mtok,
                    "unit_price": ln.price, "gross_revenue": gross, "share_rate": rate,
                    "share_amount": _money(gross * rate),
                    "_priced": ln.mtok * ln.price})  # fmt: skip
    return out


def _write(pid: str, period: Period, records: list[dict], folder: Path, planted: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    sid = f"{pid.upper()}-{period.compact}"
    issued = (period.end + timedelta(days=6)).date().isoformat()
    total = sum((r["share_amount"] for r in records), Decimal(0))
    if planted and pid == "groq":
        total -= GROQ_TOTAL_SHORT
    if pid == "nvidia":  # JSON, the total in the header
        doc = {"statement_id": sid, "revision": 1, "issued_date": issued, "partner_id": pid,
               "period": str(period), "currency": "USD", "total_share_amount": str(total),
               "lines": [{"model_id": r["model_id"], "unit": r["unit"], "unit_size": 1000000,
                          "quantity": str(r["quantity"]), "unit_price": str(r["unit_price"]),
                          "gross_revenue": str(r["gross_revenue"]),
                          "share_rate": str(r["share_rate"]),
                          "share_amount": str(r["share_amount"])} for r in records]}  # fmt: skip
        (folder / f"{sid}-r1.json").write_text(json.dumps(doc, indent=1))
    elif pid == "groq":  # our CSV template, with unit prices and the total on every line
        with (folder / f"{sid}-r1.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["statement_id", "revision", "issued_date", "partner_id", "period",
                        "model_id", "unit", "unit_size", "quantity", "unit_price",
                        "gross_revenue", "share_rate", "share_amount", "currency",
                        "total_share_amount"])  # fmt: skip
            for r in records:
                w.writerow([sid, 1, issued, pid, str(period), r["model_id"], r["unit"], 1000000,
                            r["quantity"], r["unit_price"], r["gross_revenue"], r["share_rate"],
                            r["share_amount"], "USD", total])  # fmt: skip
    else:  # Dell: a workbook in its own words (aliases, "1M" units, $ amounts, % rates)
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.append(["Statement No", "Rev", "Issued", "Partner", "Month", "Model", "Units",
                   "Qty", "Price", "Revenue", "Rate", "Amount Due", "CCY"])  # fmt: skip
        month = f"{period.start:%b %Y}"
        for r in records:
            unit = "1M " + r["unit"].replace("_tokens", "") + " tokens"
            ws.append([sid, 1, issued, pid.title(), month, r["model_id"], unit,
                       str(r["quantity"]), f"${r['unit_price']}", f"${r['gross_revenue']:,}",
                       f"{r['share_rate'] * 100:g}%", f"${r['share_amount']:,}",
                       "USD"])  # fmt: skip
        _save_reproducibly(wb, folder / f"{sid}-r1.xlsx", period.end + timedelta(days=6))


def _save_reproducibly(wb: Any, path: Path, when: datetime) -> None:
    """Save with ``when`` as every time stamp. openpyxl writes the clock time into the
    document properties and every zip entry, so a month generated twice from the same seed
    landed as a new Dell statement snapshot each time."""
    wb.properties.created = when.replace(tzinfo=None)
    raw = io.BytesIO()
    wb.save(raw)  # sets the properties' modified time to now: replaced below
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}".encode()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, data)
            entry = zipfile.ZipInfo(item.filename, date_time=when.timetuple()[:6])
            out.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)


def _write_probe(period: Period, folder: Path) -> Decimal:
    """Groq probe usage: the licensor's own requests, one line each, plus one from the last
    hour of the month before (read, then left out by period). Returns the month's cost."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, cost = [], Decimal(0)
    prices = {(ln.model, ln.unit): ln.price for ln in BASE["groq"]}
    for (model, unit), (n, tokens) in PROBE.items():
        price = prices[(model, unit)]
        for i in range(n):
            ts = period.start + timedelta(hours=3 + i * (24 * period.days - 6) // n)
            c = Decimal(tokens) * price / MILLION
            rows.append([f"probe-{period.compact}-{model}-{unit}-{i:04d}", ts.isoformat(),
                         model, unit, tokens, c, "USD"])  # fmt: skip
            cost += c
    early = period.start - timedelta(minutes=30)
    rows.append([f"probe-{period.compact}-early", early.isoformat(), "llama-3.1-8b",
                 "output_tokens", 1_000_000, Decimal("0.08"), "USD"])  # fmt: skip
    with (folder / "probe-usage.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "timestamp", "model_id", "unit", "tokens", "cost", "currency"])
        w.writerows(rows)
    return cost


def generate_statement_only(config: Config, period: Period, out: Path) -> list[dict]:
    """Write the baseline (previous) month and the planted month for every statement-only
    partner in ``config``; return the planted month's truth."""
    truth: list[dict] = []
    for pid in PARTNERS:
        partner = config.partners.get(pid)
        if partner is None or not partner.statement_only:
            continue
        root = out / partner.statement.connector_settings()["path"]
        for p, planted in ((period.prev(), False), (period, True)):
            _write(pid, p, _records(pid, p, config, planted), root / str(p), planted)
            if partner.probe is not None:
                _write_probe(p, out / partner.probe.connector_settings()["path"] / str(p))
        truth += _truth(pid, period, config)
    return truth


def _row(pid: str, period: Period, kind: str, model: str | None, unit: str | None,
         amount: Decimal | None, at_stake: Decimal | None = None) -> dict:  # fmt: skip
    return {
        "type": kind, "partner": pid, "model": model, "unit": unit, "sku": None,
        "period": str(period), "amount": None if amount is None else str(_money(amount)),
        "at_stake": None if at_stake is None else str(_money(at_stake)), "currency": "USD",
        "phase": "initial",
    }  # fmt: skip


def _truth(pid: str, period: Period, config: Config) -> list[dict]:
    contract = config.contract_for(pid, period)
    now = _records(pid, period, config, True)
    before = _records(pid, period.prev(), config, False)
    revenue = sum((r["_priced"] for r in now), Decimal(0))
    rate = terms.effective_rate(contract, revenue)
    out = []
    if pid == "groq":
        r = next(x for x in now if (x["model_id"], x["unit"]) == GROQ_UNDER_REVENUE[:2])
        out.append(_row(pid, period, "revenue_arithmetic", r["model_id"], r["unit"],
                        r["share_amount"] - r["_priced"] * rate))  # fmt: skip
        out.append(_row(pid, period, "total_mismatch", None, None, -GROQ_TOTAL_SHORT))
        n, tokens = PROBE[GROQ_PROBE_OMITTED]
        price = next(ln.price for ln in BASE["groq"] if (ln.model, ln.unit) == GROQ_PROBE_OMITTED)
        cost = n * Decimal(tokens) * price / MILLION
        out.append(_row(pid, period, "probe_usage_missing", *GROQ_PROBE_OMITTED, -cost * rate))
    if pid == "nvidia":
        for r in now:
            out.append(_row(pid, period, "share_miscalculated", r["model_id"], r["unit"],
                            r["share_amount"] - r["_priced"] * rate))  # fmt: skip
        gone = sum((r["share_amount"] for r in before if r["model_id"] == NVIDIA_VANISHED),
                   Decimal(0))  # fmt: skip
        out.append(_row(pid, period, "model_vanished", NVIDIA_VANISHED, None, None, -gone))
        m, u, f = NVIDIA_PRICE_CUT
        ln = next(x for x in BASE["nvidia"] if (x.model, x.unit) == (m, u))
        out.append(_row(pid, period, "price_change", m, u, None,
                        (ln.price * f - ln.price) * ln.mtok * rate))  # fmt: skip
    if pid == "dell":
        out.append(_row(pid, period, "licensed_model_missing", DELL_NEVER_REPORTED, None, None))
        share = revenue * rate
        share_then = sum((r["share_amount"] for r in before), Decimal(0))
        out.append(_row(pid, period, "volume_change", None, None, None, share - share_then))
        assert contract.minimum_guarantee is not None and share < contract.minimum_guarantee
        out.append(_row(pid, period, "minimum_guarantee", None, None,
                        share - contract.minimum_guarantee))  # fmt: skip
    return out
