"""The HTML report: one self-contained file (inline CSS, SVG and a little JS, no network) that a
finance reader can open offline, read, print and forward.

Jinja2 autoescaping is on, so partner-supplied text (statement ids, SKUs, file names) is
escaped. Figures are rounded only here, half-even to each currency's minor unit, and every
total is the sum of the rounded rows it sits under (``money.add``): a reader adding a column
by hand gets the total printed beneath it.
"""

from __future__ import annotations

import platform
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from importlib import metadata

from jinja2 import Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup, escape

from revshare import charts
from revshare.discrepancies import MATCHED, TITLES
from revshare.money import add, fmt_money, fmt_qty, locale_name, rounded

#: Packages whose versions a run's numbers depend on (reported in run metadata).
SOFTWARE = ("revshare-recon", "duckdb", "pyarrow", "great-expectations", "prefect", "jinja2",
            "babel", "openpyxl")  # fmt: skip

_env = Environment(
    loader=PackageLoader("revshare", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _missing(x: object) -> bool:
    return x is None or isinstance(x, Undefined)


def money_html(
    x: Decimal | None, currency: str | None = "", places: int | None = None, missing: str = ""
) -> Markup:
    """A figure in a span: negatives carry the minus sign, a colour and the class ``neg``.
    A figure given as NULL reads ``missing`` where one is named ("no billing export"); a
    figure absent altogether (a partner not reconciled) reads "—"."""
    if x is None and missing:
        return Markup('<span class="meta">{}</span>').format(missing)
    if _missing(x):
        return Markup("—")
    text = fmt_money(x, currency or None, places)
    neg = rounded(x, currency or None, places) < 0
    return Markup('<span class="{}">{}</span>').format("neg" if neg else "amt", text)


def qty(x: Decimal | int | None) -> str:
    return "—" if _missing(x) else fmt_qty(x)


_env.filters["money"] = money_html
_env.filters["qty"] = qty
# data-v: the exact rounded figure, empty where there is none (never a made-up 0)
_env.filters["r"] = lambda x, ccy=None, places=None: (
    "" if _missing(x) else str(rounded(x, ccy or None, places))
)


def software_versions() -> dict[str, str]:
    """Installed versions of what computed and rendered this run, and Python's."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def label(row: dict) -> str:
    """What a grain row is about: its model, an unmapped SKU, or a partner-level rule."""
    if row.get("model_id"):
        return str(row["model_id"])
    if row.get("sku"):
        return f"unmapped SKU {row['sku']}"
    return TITLES.get(row.get("type") or "", str(row.get("type")))


_FIELDS = ("billed_revenue", "expected_share", "reported_share", "amount")
#: Figures that exist only where a billing export does: NULL (None), never 0, for rows held
#: to the statement alone (``basis`` 'statement'), so no headline reads "0.00 billed".
BILLED = ("billed_revenue",)
#: How a NULL billed figure reads wherever a summary shows it (report, markdown, packets).
NO_BILLING = "no billing export"


def billed(rows: Iterable[dict], field: str, ccy: str | None) -> Decimal | None:
    """The displayed total of a billed figure over ``rows``: None when none of them was held
    to a billing export. A billing row without the figure (a model missing from billing)
    counts as zero: its export exists and has nothing for it."""
    values = [r.get(field) for r in rows if r.get("basis") != "statement"]
    return add(values, ccy) if values else None


def _sums(rows: list[dict], ccy: str) -> dict:
    return {
        f: billed(rows, f, ccy) if f in BILLED else add((r.get(f) for r in rows), ccy)
        for f in _FIELDS
    }


def partner_figures(grain: list[dict], outcomes: Iterable) -> list[dict]:
    """Headline figures per partner and the model rows under them, all from rounded rows."""
    by_partner: dict[str, list[dict]] = defaultdict(list)
    for r in grain:
        by_partner[r["partner"]].append(r)
    out = []
    for o in outcomes:
        rows = by_partner.get(o.partner, [])
        entry = {"partner": o.partner, "name": o.name, "status": o.status, "reason": o.reason}
        if rows:
            ccy = rows[0]["currency"]
            models: dict[str, list[dict]] = defaultdict(list)
            for r in rows:
                models[label(r)].append(r)
            flagged = [r for r in rows if r["type"] != MATCHED]
            entry |= {
                "currency": ccy,
                "models": [{"label": k, **_sums(v, ccy)} for k, v in sorted(models.items())],
                "discrepancies": len(flagged),
                "at_stake": add((abs(r["amount"] or 0) for r in flagged), ccy),
                **_sums(rows, ccy),
            }
            # The headline is the sum of the model rows shown under it, by construction.
            for f in _FIELDS:
                shown = [m[f] for m in entry["models"] if m[f] is not None]
                assert entry[f] == (sum(shown, Decimal(0)) if shown else None)
        out.append(entry)
    return out


def currency_totals(partners: list[dict], fields: Iterable[str]) -> list[dict]:
    """Per currency, the sum of each partner figure shown (never mixed across currencies).

    A partner without a billing export adds nothing to a billed total and is named in
    ``no_billing``, for the total to say so; with none billed the total is None too."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in partners:
        if p.get("currency"):
            groups[p["currency"]].append(p)
    out = []
    for c, ps in sorted(groups.items()):
        missing = [p["partner"] for p in ps if p.get("billed_revenue") is None]
        row: dict = {"currency": c, "no_billing": missing}
        for f in fields:
            shown = [p[f] for p in ps if p[f] is not None]
            row[f] = sum(shown, Decimal(0)) if shown or f not in BILLED else None
        out.append(row)
    return out


def variance_charts(partners: list[dict]) -> list[dict]:
    """One bar chart per currency: net variance by partner and model (non-zero rows)."""
    groups: dict[str, list[charts.Bar]] = defaultdict(list)
    for p in partners:
        for m in p.get("models", []):
            if m["amount"]:
                text = fmt_money(m["amount"], p["currency"])
                groups[p["currency"]].append(charts.Bar(f"{p['partner']} · {m['label']}",
                                                        m["amount"], text))  # fmt: skip
    return [
        {"currency": c, "svg": charts.variance_bars(b, f"Net variance by partner and model, {c}")}
        for c, b in sorted(groups.items())
    ]


def trend(history: list[dict], grain: list[dict], period: str) -> list[dict]:
    """Net variance per partner over the periods the ledger holds, plus this run's period.
    Each point is the sum of that run's rounded grain amounts, as its own report showed."""
    points: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for r in [*history, *({**g, "period": period} for g in grain)]:
        points[(r["currency"], r["partner"], r["period"])] += rounded(r["amount"], r["currency"])
    out = []
    for ccy in sorted({k[0] for k in points}):
        periods = sorted({k[2] for k in points if k[0] == ccy})
        names = sorted({k[1] for k in points if k[0] == ccy})
        series = [charts.Series(n, [points.get((ccy, n, p)) for p in periods]) for n in names]
        svg = charts.trend_lines(
            periods, series, f"Net variance per partner by period, {ccy}",
            lambda v, c=ccy: fmt_money(Decimal(str(v)), c),
        )  # fmt: skip
        out.append({"currency": ccy, "periods": periods, "series": series, "svg": svg})
    return out


def discrepancy_totals(disc: list[dict]) -> list[dict]:
    """Per currency: how many discrepancies, and the sum of their rounded amounts."""
    out = []
    for c in sorted({d["currency"] for d in disc}):
        rows = [d for d in disc if d["currency"] == c]
        out.append(
            {"currency": c, "count": len(rows), "amount": add((d["amount"] for d in rows), c)}
        )
    return out


def render_report(
    *, grain: list[dict], outcomes: list, history: list[dict], meta: dict, **context: object
) -> str:
    """Render the report. ``grain`` is every reconciled row (matched or not), ``history`` the
    ledger's rows for earlier periods (``ledger_reads.partner_history``)."""
    partners = partner_figures(grain, outcomes)
    disc = context.get("discrepancies") or []
    fields = ("billed_revenue", "expected_share", "reported_share", "amount", "at_stake")
    return _env.get_template("report.html.j2").render(
        meta=meta,
        outcomes=outcomes,
        partners=partners,
        totals=currency_totals([p for p in partners if "amount" in p], fields),
        disc_totals=discrepancy_totals(disc),
        variance_charts=variance_charts(partners),
        trend=trend(history, grain, meta["period"]),
        locale=locale_name(),
        titles=TITLES,
        billed_fields=BILLED,
        no_billing=NO_BILLING,
        escape=escape,
        **context,
    )
