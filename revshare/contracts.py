"""Contract terms as configured: rates or tiers, guarantee, currency, FX policy, tolerance."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from revshare.periods import Period
from revshare.schema import CHARGE_CATEGORIES
from revshare.strict import Strict

_CURRENCY = r"^[A-Z]{3}$"


class Tolerance(Strict):
    """A difference is within tolerance if |diff| <= max(absolute, relative * |expected|)."""

    absolute: Decimal = Field(Decimal("0.01"), ge=0)
    relative: Decimal = Field(Decimal("0"), ge=0)


class Tier(Strict):
    """From this much monthly revenue (in the contract currency) on, this rate applies."""

    from_revenue: Decimal = Field(ge=0)
    rate: Decimal = Field(ge=0, le=1)


class Tiers(Strict):
    """Rates by monthly revenue. ``marginal``: each slice of revenue at its own band's rate
    (like income tax). ``whole_volume``: the band the month's total reaches sets the rate for
    all of it."""

    mode: Literal["marginal", "whole_volume"]
    bands: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered_from_zero(self) -> Tiers:
        starts = [b.from_revenue for b in self.bands]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("tier bands must start at 0 and strictly increase")
        return self


class Contract(Strict):
    partner: str
    effective_from: date
    effective_to: date | None = Field(None, description="Exclusive; null means open-ended.")
    share_rate: Decimal | None = Field(None, gt=0, le=1)
    model_rates: dict[str, Decimal] = Field(default_factory=dict)
    tiers: Tiers | None = None
    minimum_guarantee: Decimal | None = Field(
        None, ge=0, description="Minimum share owed for the month, in the contract currency."
    )
    currency: str = Field(pattern=_CURRENCY, description="Reporting currency of statements.")
    fx_policy: Literal["month_end", "daily"] = Field(
        "month_end",
        description="Which rate converts billing in other currencies: the period's month-end "
        "rate, or the rate of each line's usage day. Statements always use month-end.",
    )
    tolerance: Tolerance = Tolerance()
    models: list[str] | None = Field(
        None,
        description="The licensed models the partner may serve. A statement-only partner's "
        "statement is checked for completeness against them; null: not checked.",
    )
    charge_categories: list[str] = Field(default_factory=lambda: ["Usage"])

    @field_validator("charge_categories")
    @classmethod
    def _known_categories(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CHARGE_CATEGORIES]
        if bad:
            raise ValueError(f"unknown charge categories {bad}; use {CHARGE_CATEGORIES}")
        return v

    @model_validator(mode="after")
    def _one_rate_rule(self) -> Contract:
        if (self.share_rate is None) == (self.tiers is None):
            raise ValueError(f"contract for {self.partner}: give share_rate or tiers, not both")
        if self.tiers is not None and self.model_rates:
            raise ValueError(f"contract for {self.partner}: model_rates need a flat share_rate")
        return self

    def covers(self, period: Period) -> bool:
        start = period.first_day
        return self.effective_from <= start and (
            self.effective_to is None or start < self.effective_to
        )
