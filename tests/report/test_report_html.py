"""The report as finance reads it: every total is the sum of the rows shown above it (parsed
back from the HTML text), negatives are unmistakable, partner text is escaped, and the file
needs nothing from the network."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

import openpyxl
import pyarrow.parquet as pq
import pytest

from revshare.config import load_config
from revshare.discrepancies import FLAGS
from revshare.outcome import PartnerOutcome
from revshare.publish import _markdown, partner_summary
from tests.report.conftest import PLANTED, REPO, Runs
from tests.report.htmlparse import Node, amount, parse

pytestmark = pytest.mark.integration
FIELDS = ("billed_revenue", "expected_share", "reported_share", "amount")


def _rows(section: Node) -> list[Node]:
    return [c for c in section.children if c.tag == "tr"]


def _cell(tr: Node, f: str) -> Node:
    return next(c for c in tr.children if c.tag == "td" and c.attrs.get("data-f") == f)


def _value(tr: Node, f: str, ccy: str) -> Decimal:
    cell = _cell(tr, f)
    shown = amount(cell.all_text(), ccy)
    assert shown == Decimal(cell.attrs["data-v"]), "the text and data-v disagree"
    return shown


#: Every configured partner has a headline row and a by-model group (all reconcile).
PARTNERS = list(load_config(REPO / "config").partners)
#: Partners without a billing export: no billed figure at all, never 0.00.
STATEMENT_ONLY = [p for p, c in load_config(REPO / "config").partners.items() if c.statement_only]
NO_BILLING = "no billing export"


def _shown(rows: list[Node], f: str, ccy: str) -> Decimal:
    """The sum of the figures shown in column ``f``; a billed cell with no figure (a partner
    without a billing export) must say so, and adds nothing."""
    total = Decimal(0)
    for tr in rows:
        if f == "billed_revenue" and _cell(tr, f).attrs["data-v"] == "":
            assert _cell(tr, f).all_text() == NO_BILLING
            continue
        total += _value(tr, f, ccy)
    return total


def _part(table: Node, tag: str) -> list[Node]:
    return [c for c in table.children if c.tag == tag]


@pytest.fixture(scope="module")
def doc(runs: Runs) -> Node:
    return parse(runs.report.read_text())


def test_headline_totals_are_the_sum_of_partner_rows(doc: Node) -> None:
    table = doc.by_id("headline")
    body, foot = _part(table, "tbody")[0], _part(table, "tfoot")[0]
    partners = [tr for tr in _rows(body) if tr.attrs.get("data-currency")]
    assert len(partners) == len(PARTNERS)
    for total in _rows(foot):
        ccy = total.attrs["data-currency"]
        rows = [tr for tr in partners if tr.attrs["data-currency"] == ccy]
        for f in (*FIELDS, "at_stake"):
            assert _shown(rows, f, ccy) == _value(total, f, ccy), f
        # The billed total names the partners it leaves out.
        left_out = [tr.attrs["data-partner"] for tr in rows
                    if _cell(tr, "billed_revenue").attrs["data-v"] == ""]  # fmt: skip
        note = next(c for c in total.children if c.tag == "th").all_text()
        for p in left_out:
            assert p in note and NO_BILLING in note


def test_statement_only_partners_show_no_billing_export(doc: Node) -> None:
    assert STATEMENT_ONLY  # the demo config has statement-only partners
    rows = {tr.attrs["data-partner"]: tr for tr in _rows(_part(doc.by_id("headline"), "tbody")[0])}
    for partner in PARTNERS:
        cell = _cell(rows[partner], "billed_revenue")
        if partner in STATEMENT_ONLY:
            assert cell.all_text() == NO_BILLING and cell.attrs["data-v"] == "", partner
            assert "0.00" not in cell.all_text()
        else:
            assert cell.attrs["data-v"] != "" and NO_BILLING not in cell.all_text(), partner
    # The same in the by-model table: each model row and the partner total.
    for g in _part(doc.by_id("by-model"), "tbody"):
        cells = [_cell(tr, "billed_revenue") for tr in _rows(g)]
        if g.attrs["data-partner"] in STATEMENT_ONLY:
            assert cells and all(c.all_text() == NO_BILLING for c in cells)


def test_summary_outputs_carry_no_billing_export(runs: Runs) -> None:
    """The exact summary (markdown, the flow's result) holds NULL, and the markdown and the
    dispute packets say "no billing export", for exactly the statement-only partners."""
    grain = pq.read_table(runs.run_dir / "results" / "reconciliation.parquet")
    outcomes = [PartnerOutcome(p, p) for p in PARTNERS]
    summary = {s["partner"]: s for s in partner_summary(grain, outcomes)}
    for p in PARTNERS:
        assert (summary[p]["billed_revenue"] is None) == (p in STATEMENT_ONLY), p
    meta = {"period": "2026-10", "status": "completed", "run_id": "r"}
    md = _markdown(meta, list(summary.values()), [], runs.report).splitlines()
    for p in PARTNERS:
        row = next(line for line in md if line.startswith(f"| {p} |"))
        assert (NO_BILLING in row) == (p in STATEMENT_ONLY), row
    packets = [p for p in STATEMENT_ONLY if (runs.run_dir / "packets" / p).is_dir()]
    assert packets  # the generator plants discrepancies for statement-only partners too
    for p in packets:
        wb = openpyxl.load_workbook(runs.run_dir / "packets" / p / f"dispute_2026-10_{p}.xlsx")
        figures = {r[0].value: r[1].value for r in wb["Summary"].iter_rows(max_row=11)}
        assert figures["Billed revenue"] == NO_BILLING


def test_model_rows_add_up_to_each_partner_headline(doc: Node) -> None:
    headline = {
        tr.find_all("strong")[0].all_text(): tr
        for tr in _rows(_part(doc.by_id("headline"), "tbody")[0])
    }
    groups = _part(doc.by_id("by-model"), "tbody")
    assert len(groups) == len(PARTNERS)
    for g in groups:
        ccy, partner = g.attrs["data-currency"], g.attrs["data-partner"]
        rows = [tr for tr in _rows(g) if tr.attrs.get("class") == "row"]
        total = next(tr for tr in _rows(g) if tr.attrs.get("class") == "total")
        for f in FIELDS:
            if partner in STATEMENT_ONLY and f == "billed_revenue":
                continue  # no figure to add up (test_statement_only_partners_...)
            assert _shown(rows, f, ccy) == _value(total, f, ccy)
            assert _value(total, f, ccy) == _value(headline[partner], f, ccy)


def test_discrepancy_total_and_negatives(doc: Node, runs: Runs) -> None:
    table = doc.by_id("disc")
    rows = _rows(_part(table, "tbody")[0])
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for tr in rows:
        if _cell(tr, "amount").attrs["data-v"] == "":  # a statement-only flag: no amount
            assert tr.attrs["data-type"] in FLAGS
            continue
        sums[tr.attrs["data-currency"]] += _value(tr, "amount", tr.attrs["data-currency"])
    foot = _rows(_part(table, "tfoot")[0])
    assert {tr.attrs["data-currency"]: _value(tr, "amount", tr.attrs["data-currency"])
            for tr in foot} == dict(sums)  # fmt: skip
    # A negative is signed (U+2212), coloured and classed; never colour alone.
    html = runs.report.read_text()
    negs = re.findall(r'data-v="(-[0-9.]+)">(<span class="[a-z]+">[^<]+</span>)', html)
    assert negs
    for _, span in negs:
        assert span.startswith('<span class="neg">\u2212')


def test_sections_charts_drilldown_and_metadata(doc: Node, runs: Runs) -> None:
    html = runs.report.read_text()
    for ident in ("summary", "charts", "trend", "discrepancies", "restatements", "quality", "run"):
        assert doc.by_id(ident) is not None, ident
    assert len(doc.find_all("svg")) >= 2
    trend = doc.by_id("trend").all_text()
    assert "2026-09" in trend and "2026-10" in trend
    # Drill-down: snapshot, file and row of a source line.
    lines = doc.by_id("disc").find_all("details")
    text = " ".join(node.all_text() for node in lines)
    assert "snappy.parquet" in text and ".json.gz" in text and "statement" in text
    for name in ("duckdb", "pyarrow", "babel", "python"):
        assert f'<th scope="row">{name}</th>' in html


def test_partner_text_is_escaped_and_nothing_is_fetched(runs: Runs) -> None:
    html = runs.report.read_text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # our own, inline
    assert not re.search(r"<(link|img|iframe)\b", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "@import" not in html and "url(" not in html
    assert PLANTED.split("<")[0].replace('"', "&#34;") in html
