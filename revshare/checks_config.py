"""Bands for the checks a statement-only partner gets (``config/checks.yaml``).

With no billing export to hold a statement to, the partner's own history is the reference:
how far revenue may move month over month, and how far a price per token may move, before a
human should look. These are judgement calls finance owns, so they are data, not code.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from revshare.strict import Strict


class HistoryBands(Strict):
    """Relative bands: 0.5 flags a change of more than 50 % either way."""

    volume: Decimal = Field(
        Decimal("0.5"), gt=0, description="Month-over-month change in reported revenue."
    )
    price: Decimal = Field(
        Decimal("0.05"), gt=0, description="Change in a model's price per token (per unit)."
    )


class StatementChecks(Strict):
    history: HistoryBands = HistoryBands()


class ChecksConfig(Strict):
    """A default, and whole per-partner overrides."""

    default: StatementChecks = StatementChecks()
    partners: dict[str, StatementChecks] = Field(default_factory=dict)

    def for_partner(self, partner: str) -> StatementChecks:
        return self.partners.get(partner, self.default)
