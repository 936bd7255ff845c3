"""The HTML report: one self-contained file (inline CSS and JS, no network) a finance reader
can open, read and forward. Jinja2 autoescaping is on, so partner-supplied text is escaped."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from jinja2 import Environment, PackageLoader, Undefined, select_autoescape

_env = Environment(
    loader=PackageLoader("revshare", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(x: Decimal | None, currency: str = "", places: int = 2) -> str:
    """Half-even to the minor unit, thousands separated, a real minus sign for negatives."""
    if x is None or isinstance(x, Undefined):
        return "—"
    q = Decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{abs(q):,.{places}f}"
    sign = "−" if q < 0 else ""
    return f"{sign}{text} {currency}".strip()


def qty(x: Decimal | int | None) -> str:
    return "—" if x is None or isinstance(x, Undefined) else f"{Decimal(x):,.0f}"


_env.filters["money"] = money
_env.filters["qty"] = qty


def render_report(**context: object) -> str:
    return _env.get_template("report.html.j2").render(**context)
