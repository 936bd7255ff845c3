"""Contract arithmetic: the share a month's revenue earns, under flat or tiered terms.

Pure Decimal functions on partner totals (a handful of numbers), so tier and guarantee rules
are easy to read and to test by hand.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from revshare.config import Contract

#: Places kept in an effective (blended) rate. Revenue x rate then differs from the exact
#: tiered share by at most revenue x 1e-16: far below a cent for any real month.
RATE_PLACES = 16


def tiered_share(contract: Contract, revenue: Decimal) -> Decimal:
    """The share owed on ``revenue`` under the contract's tiers (revenue >= 0)."""
    assert contract.tiers is not None
    bands = contract.tiers.bands
    if contract.tiers.mode == "whole_volume":
        rate = next(b.rate for b in reversed(bands) if revenue >= b.from_revenue)
        return revenue * rate
    share = Decimal(0)
    for band, nxt in zip(bands, [*bands[1:], None], strict=True):
        top = revenue if nxt is None else min(revenue, nxt.from_revenue)
        if top > band.from_revenue:
            share += (top - band.from_revenue) * band.rate
    return share


def effective_rate(contract: Contract, revenue: Decimal) -> Decimal:
    """The one rate that, applied to every model's revenue, gives the month's share."""
    if contract.tiers is None:
        assert contract.share_rate is not None
        return contract.share_rate
    if revenue <= 0:
        return contract.tiers.bands[0].rate
    with localcontext() as ctx:
        ctx.prec = 50
        rate = tiered_share(contract, revenue) / revenue
    return rate.quantize(Decimal(1).scaleb(-RATE_PLACES))


def model_rate(contract: Contract, model: str | None, revenue: Decimal) -> Decimal:
    """Rate for one model's revenue: a flat contract's model rate, else the blended rate."""
    if contract.tiers is None and model in contract.model_rates:
        return contract.model_rates[model]
    return effective_rate(contract, revenue)


def describe(contract: Contract) -> str:
    """A short human description of the rate rule, for the report."""
    if contract.tiers is None:
        extra = ", ".join(f"{m} {r}" for m, r in sorted(contract.model_rates.items()))
        return f"flat {contract.share_rate}" + (f" ({extra})" if extra else "")
    bands = "; ".join(f"from {b.from_revenue:,}: {b.rate}" for b in contract.tiers.bands)
    return f"tiered, {contract.tiers.mode.replace('_', '-')} ({bands})"
