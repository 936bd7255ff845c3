"""Do the references reach the pipeline's figures? Grain totals compared field by field.

The references sum floats, as their readers and a pandas script do, so agreement is to the
cent for money and to one token for token counts (a float sum of tens of millions of
fractional 1K-token quantities is not an exact integer); anything further apart is a
mismatch and listed.
"""

from __future__ import annotations

from collections import defaultdict

from revshare.config import Config
from revshare.periods import Period

LIMIT_FIELDS = ("billed_tokens", "billed_revenue")
PANDAS_FIELDS = (
    "billed_tokens", "billed_revenue", "expected_share", "reported_tokens", "reported_share",
    "amount",
)  # fmt: skip
MONEY_TOLERANCE = 0.01
TOKEN_TOLERANCE = 1.0


def limit_grain(by_currency: list[dict], config: Config, period: Period) -> list[dict]:
    """The limit pass's (partner, model, unit, currency) sums in each contract's currency at
    its month-end rate (a few dozen rows: conversion here, not in the timed pass)."""
    out: dict[tuple, dict] = defaultdict(lambda: {"billed_tokens": 0.0, "billed_revenue": 0.0})
    for r in by_currency:
        c = config.contract_for(r["partner"], period)
        rate = float(config.fx.rate(period, r["currency"], c.currency))
        g = out[(r["partner"], r["model_id"], r["unit"])]
        g["billed_tokens"] += r["tokens"]
        g["billed_revenue"] += r["cost"] * rate
    return [{"partner": k[0], "model_id": k[1], "unit": k[2], **v} for k, v in sorted(out.items())]


def agree(
    pipeline: list[dict], reference: list[dict], fields: tuple[str, ...], partners: list[str]
) -> dict:
    """``{"equal": bool, "rows": n, "mismatches": [...]}`` over the union of the grain keys
    of ``partners`` (those with billing the references read; statement-only partners have no
    billing to sum). A partner the pipeline quarantined has no rows, so it shows as a mismatch."""
    key = lambda r: (r["partner"], r["model_id"], r["unit"])  # noqa: E731
    mine = {key(r): r for r in pipeline if r["partner"] in partners}
    theirs = {key(r): r for r in reference if r["partner"] in partners}
    bad = []
    for k in sorted(set(mine) | set(theirs)):
        a, b = mine.get(k, {}), theirs.get(k, {})
        for f in fields:
            x, y = a.get(f) or 0.0, b.get(f) or 0.0
            tol = TOKEN_TOLERANCE if f.endswith("tokens") else MONEY_TOLERANCE
            if abs(x - y) > tol:
                bad.append({"grain": list(k), "field": f, "pipeline": x, "reference": y})
    return {"equal": not bad and bool(mine), "rows": len(mine), "partners": sorted(partners),
            "mismatches": bad[:20]}  # fmt: skip
