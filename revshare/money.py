"""Money as finance reads it: rounded half-even to the currency's minor unit, formatted by Babel.

Amounts stay exact ``Decimal`` everywhere else; only the report, the packets and their totals
round. Totals shown beside rows are sums of the *rounded* rows (``add``), so every total a
reader adds up by hand matches to the last minor unit. The locale comes from
``REVSHARE_LOCALE`` (default ``en_US``), so a Frankfurt reader sees ``1.234,56 $``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

from babel import Locale
from babel.numbers import (
    format_currency,
    format_decimal,
    get_currency_precision,
    get_currency_symbol,
)

LOCALE_ENV = "REVSHARE_LOCALE"
DEFAULT_LOCALE = "en_US"
#: The typographic minus (U+2212): wider than a hyphen, so a negative cannot be misread.
MINUS = "\u2212"


def locale_name() -> str:
    """The display locale; an unknown name fails loudly here rather than mid-report."""
    name = os.environ.get(LOCALE_ENV) or DEFAULT_LOCALE
    Locale.parse(name)
    return name


def minor_units(currency: str | None) -> int:
    """Digits after the decimal point for this currency (JPY 0, USD 2, BHD 3)."""
    return get_currency_precision(currency) if currency else 2


def rounded(x: Decimal | int | None, currency: str | None, places: int | None = None) -> Decimal:
    """Half-even to the minor unit (or ``places``); ``None`` counts as zero."""
    p = minor_units(currency) if places is None else places
    return Decimal(x or 0).quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_EVEN)


def add(values: Iterable[Decimal | None], currency: str | None) -> Decimal:
    """The total of displayed rows: the sum of each value as rounded for display."""
    return sum((rounded(v, currency) for v in values), Decimal(0))


def _minus(text: str, locale: str) -> str:
    sign = Locale.parse(locale).number_symbols.get("latn", {}).get("minusSign", "-")
    return text.replace(sign, MINUS, 1) if sign != MINUS else text


def fmt_money(
    x: Decimal | int | None, currency: str | None, places: int | None = None, locale: str = ""
) -> str:
    """``-$1,234.56`` as ``−$1,234.56`` (en_US); ``places`` above the minor unit shows the
    extra digits that are not zero (source lines carry sub-cent amounts)."""
    if x is None:
        return "—"
    loc = locale or locale_name()
    q = rounded(x, currency, places)
    if not currency:
        text = format_decimal(q, format="#,##0.00", locale=loc, decimal_quantization=False)
    elif places is not None and places > minor_units(currency):
        n = q.normalize()
        if n.as_tuple().exponent > -minor_units(currency):
            n = n.quantize(Decimal(1).scaleb(-minor_units(currency)))
        text = format_currency(n, currency, locale=loc, decimal_quantization=False)
    else:
        text = format_currency(q, currency, locale=loc)
    return _minus(text, loc) if q < 0 else text


def fmt_qty(x: Decimal | int | None, locale: str = "") -> str:
    """Token counts: whole numbers with the locale's grouping."""
    if x is None:
        return "—"
    q = Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    loc = locale or locale_name()
    text = format_decimal(q, format="#,##0", locale=loc)
    return _minus(text, loc) if q < 0 else text


def excel_format(currency: str | None, places: int | None = None, locale: str = "") -> str:
    """An Excel number format showing the currency symbol where the locale puts it, with the
    minor unit's digits, and negatives both red and signed (``"$"#,##0.00;[Red]-"$"#,##0.00``).
    Excel applies the reader's own separators; the cell holds a real number."""
    p = minor_units(currency) if places is None else places
    zeros, extra = min(p, minor_units(currency)), max(0, p - minor_units(currency))
    body = "#,##0" + ("." + "0" * zeros + "#" * extra if p else "")
    if not currency:
        return f"{body};[Red]-{body}"
    loc = Locale.parse(locale or locale_name())
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    symbol = get_currency_symbol(currency, locale=loc).replace('"', "")
    suffix = pattern.strip().endswith("¤")
    pos = f'{body}\\ "{symbol}"' if suffix else f'"{symbol}"{body}'
    return f"{pos};[Red]-{pos}"
