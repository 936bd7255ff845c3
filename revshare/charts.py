"""Charts as inline SVG, drawn on the server: the report stays one file that works offline, with
JavaScript off, and prints as crisply as its text. No chart library, no CDN.

Every chart carries its figures as text (value labels, a table beside it in the report), so
colour is never the only carrier of meaning: bars left of the zero line are negative, trend
lines are labelled at their ends and differ in marker shape as well as colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

PALETTE = ("#2450a6", "#c2410c", "#0f766e", "#7c3aed", "#a16207", "#be185d", "#475569")
NEG, POS, AXIS, GRID, INK = "#b3261e", "#1b6e3a", "#5b6573", "#e6e9ef", "#1d2430"
WIDTH = 1160


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    text: str  # the value as the report formats it (currency, locale, minus sign)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Decimal | None]  # one per period; None where the ledger has no run


def _svg(height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def variance_bars(bars: Sequence[Bar], title: str) -> Markup:
    """Horizontal bars diverging from a zero line: shortfalls left in red, excess right in
    green, each with its formatted amount written beside it."""
    left, right, row = 300, 150, 24
    span = WIDTH - left - right
    top = 8
    height = top + row * max(len(bars), 1) + 24
    peak = max((abs(float(b.value)) for b in bars), default=0.0) or 1.0
    lo = min((float(b.value) for b in bars), default=0.0)
    hi = max((float(b.value) for b in bars), default=0.0)
    # Zero sits where the data needs it: at the left edge when nothing is negative.
    share_neg = (-lo / (hi - lo)) if hi > lo and lo < 0 else (1.0 if hi <= 0 and lo < 0 else 0.0)
    zero = left + span * share_neg
    scale = span / ((hi - lo) if hi > lo else peak)
    out = []
    for i, b in enumerate(bars):
        y = top + i * row
        v = float(b.value)
        w = max(abs(v) * scale, 1.0 if v else 0.0)
        x = zero - w if v < 0 else zero
        colour = NEG if v < 0 else POS
        short = b.label if len(b.label) <= 40 else b.label[:39] + "…"
        out.append(
            f'<text x="{left - 10}" y="{y + 16}" text-anchor="end" fill="{INK}">'
            f"{escape(short)}</text>"
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{colour}">'
            f"<title>{escape(b.label)}: {escape(b.text)}</title></rect>"
        )
        tx, anchor = (x - 6, "end") if v < 0 and x - left > 90 else (max(x + w, zero) + 6, "start")
        out.append(
            f'<text x="{tx:.1f}" y="{y + 16}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="600">{escape(b.text)}</text>'
        )
    bottom = top + row * max(len(bars), 1)
    out.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<text x="{zero:.1f}" y="{bottom + 16}" text-anchor="middle" fill="{AXIS}">0</text>'
    )
    return _svg(height, title, out)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round-number gridlines covering [lo, hi] (always including zero)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(math.ceil((hi - start) / step) + 1)]


_MARKERS: tuple[Callable[[float, float, str], str], ...] = (
    lambda x, y, c: f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"/>',
    lambda x, y, c: f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}"/>',
    lambda x, y, c: (
        f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 4:.1f}'
        f'L{x - 5:.1f} {y + 4:.1f}Z" fill="{c}"/>'
    ),
    lambda x, y, c: (
        f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y:.1f}L{x:.1f} {y + 5:.1f}'
        f'L{x - 5:.1f} {y:.1f}Z" fill="{c}"/>'
    ),
)


def trend_lines(
    periods: Sequence[str], series: Sequence[Series], title: str, fmt: Callable[[float], str]
) -> Markup:
    """One line per series across the periods, zero line emphasised, labelled at the end."""
    left, right, top, bottom, height = 110, 170, 12, 30, 280
    vals = [float(v) for s in series for v in s.values if v is not None]
    ticks = _ticks(min(vals, default=0.0), max(vals, default=0.0))
    lo, hi = ticks[0], ticks[-1]
    plot_h = height - top - bottom
    step = (WIDTH - left - right) / max(len(periods) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    def x(i: int) -> float:
        return left + (i * step if len(periods) > 1 else (WIDTH - left - right) / 2)

    out = []
    for t in ticks:
        stroke = AXIS if t == 0 else GRID
        out.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="{stroke}"/><text x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end" '
            f'fill="{AXIS}">{escape(fmt(t))}</text>'
        )
    for i, p in enumerate(periods):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - 10}" text-anchor="middle" fill="{AXIS}">'
            f"{escape(p)}</text>"
        )
    ends: list[tuple[float, float, str, str]] = []
    for k, s in enumerate(series):
        colour, marker = PALETTE[k % len(PALETTE)], _MARKERS[k % len(_MARKERS)]
        pts = [(x(i), y(float(v)), v) for i, v in enumerate(s.values) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f} {py:.1f}" for j, (px, py, _) in
                            enumerate(pts))  # fmt: skip
            out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, py, v in pts:
            out.append(
                f"<g>{marker(px, py, colour)}<title>{escape(s.name)}: {escape(fmt(float(v)))}"
                "</title></g>"
            )
        if pts:
            ends.append((pts[-1][1], pts[-1][0], s.name, colour))
    # End labels, pushed apart vertically so lines that end together stay legible.
    last = -1e9
    for py, px, name, colour in sorted(ends):
        ly = max(py + 4, last + 14)
        last = ly
        out.append(
            f'<text x="{px + 10:.1f}" y="{ly:.1f}" fill="{colour}" font-weight="600">'
            f"{escape(name)}</text>"
        )
    return _svg(height, title, out)
