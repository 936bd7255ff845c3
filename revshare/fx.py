"""FX rates as configured: month-end per period, and daily."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field

from revshare.periods import Period
from revshare.strict import Strict

_CURRENCY = r"^[A-Z]{3}$"


class FxRates(Strict):
    """One unit of each currency in ``base``: month-end rates per period, and daily rates."""

    base: str = Field("USD", pattern=_CURRENCY)
    month_end: dict[str, dict[str, Decimal]] = Field(default_factory=dict)
    daily: dict[date, dict[str, Decimal]] = Field(default_factory=dict)

    @staticmethod
    def _convert(table: dict[str, Decimal], base: str, a: str, b: str, when: str) -> Decimal:
        if a == b:
            return Decimal(1)
        table = {**table, base: Decimal(1)}
        missing = [c for c in (a, b) if c not in table]
        if missing:
            raise LookupError(f"no FX rate for {', '.join(missing)} on {when}")
        return table[a] / table[b]

    def rate(self, period: Period, from_ccy: str, to_ccy: str) -> Decimal:
        """The period's month-end rate."""
        return self._convert(
            self.month_end.get(str(period), {}), self.base, from_ccy, to_ccy, f"month end {period}"
        )

    def rate_on(self, day: date, from_ccy: str, to_ccy: str) -> Decimal:
        """The rate of one day (daily policy)."""
        return self._convert(self.daily.get(day, {}), self.base, from_ccy, to_ccy, str(day))
