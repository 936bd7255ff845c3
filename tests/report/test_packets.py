"""Dispute packets: real typed cells, frozen filtered headers, totals that add up, and no
partner-supplied text that a spreadsheet could run as a formula."""

from __future__ import annotations

import csv
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from revshare import lines as line_files
from revshare.packets import SHEET_LINES, neutralize, write_packet
from revshare.report import partner_figures
from tests.report.conftest import PLANTED, Runs

pytestmark = pytest.mark.integration
HOSTILE_SKU = "+SUM(1)"
HOSTILE_FILE = '=HYPERLINK("http://evil.example","open")'


def _no_formulas(xlsx: Path) -> None:
    with zipfile.ZipFile(xlsx) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert "<f>" not in z.read(name).decode(), f"formula in {name}"


def _text_cells_safe(wb: openpyxl.Workbook) -> int:
    risky = 0
    for ws in wb:
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str):
                    assert c.data_type == "s" and c.quotePrefix, (ws.title, c.coordinate)
                    risky += c.value.startswith(("=", "+", "-", "@"))
    return risky


def test_packet_from_a_real_run(runs: Runs) -> None:
    folder = runs.run_dir / "packets" / "aws"
    xlsx = folder / "dispute_2026-10_aws.xlsx"
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames == ["Summary", "Discrepancies", "Supporting lines"]
    for ws in wb:
        assert ws.freeze_panes and ws.auto_filter.ref
    _no_formulas(xlsx)
    assert _text_cells_safe(wb) >= 1  # the planted statement id is there, as plain text
    summary = wb["Summary"]
    figures = {r[0].value: r[1].value for r in summary.iter_rows(max_row=11)}
    assert figures["Statement(s)"] == PLANTED
    # The by-type rows add up to the total row, which is the net variance above them.
    head = int(summary.auto_filter.ref.split(":")[0][1:])
    body = list(summary.iter_rows(min_row=head + 1, values_only=True))
    *rows, total = body
    assert total[0].startswith("Total")
    for col in (2, 3, 4):
        assert round(sum(Decimal(str(r[col])) for r in rows), 2) == Decimal(str(total[col]))
    assert Decimal(str(total[4])) == Decimal(str(figures["Net variance (reported − expected)"]))
    amount = summary.cell(row=head + 1, column=5)
    assert amount.data_type == "n" and "0.00" in amount.number_format
    assert "[Red]" in amount.number_format
    # Discrepancy amounts are numbers that sum to the discrepancies' share of the variance.
    disc = wb["Discrepancies"]
    amounts = [r[15] for r in disc.iter_rows(min_row=2, values_only=True)]
    assert all(isinstance(a, int | float) for a in amounts) and amounts
    # CSV: the same rows, the planted id neutralized with a leading apostrophe.
    with (folder / "supporting_lines.csv").open(newline="") as f:
        lines = list(csv.DictReader(f))
    stmt = [r for r in lines if r["Side"] == "statement"]
    assert stmt and all(r["Line id"].startswith("'=HYPERLINK(") for r in stmt)
    assert len(lines) == wb["Supporting lines"].max_row - 1


class _Outcome:
    partner, name, status, reason = "acme", "Acme Cloud", "reconciled", None


def test_hostile_text_in_sku_file_and_statement_is_inert(tmp_path: Path) -> None:
    grain = [
        {"partner": "acme", "period": "2026-10", "type": "unmapped_sku", "model_id": None,
         "unit": None, "sku": HOSTILE_SKU, "currency": "JPY", "billed_revenue": Decimal("1000.5"),
         "expected_share": Decimal("150.5"), "reported_share": None, "amount": Decimal("-150.5"),
         "discrepancy_id": "d1", "statement_id": "@cmd", "explanation": "-2+3 " + HOSTILE_SKU},
        {"partner": "acme", "period": "2026-10", "type": "matched", "model_id": "m",
         "unit": "tokens", "sku": None, "currency": "JPY", "billed_revenue": Decimal("10"),
         "expected_share": Decimal("2.5"), "reported_share": Decimal("3.5"),
         "amount": Decimal("1"), "discrepancy_id": "d2", "statement_id": "\tTAB"},
    ]  # fmt: skip
    lines = pa.Table.from_pylist([
        {"discrepancy_id": "d1", "side": "billing", "snapshot_id": "s1",
         "source_file": HOSTILE_FILE, "source_row": 7, "line_id": "+1", "sku": HOSTILE_SKU,
         "region": "\rCR", "charge_category": "Usage", "usage_date": date(2026, 10, 3),
         "tokens": Decimal(5), "amount": Decimal("-0.1234567"), "currency": "JPY"},
    ])  # fmt: skip
    partner = partner_figures(grain, [_Outcome()])[0]
    # JPY has no minor unit: half-even to whole yen (150.5 -> 150, 2.5 -> 2, 3.5 -> 4).
    assert partner["expected_share"] == Decimal(152) and partner["amount"] == Decimal(-149)
    pq.write_table(lines, tmp_path / "lines.parquet")
    files = write_packet(tmp_path, period="2026-10", run_id="r", partner=partner, grain=grain,
                         lines=tmp_path / "lines.parquet")  # fmt: skip
    xlsx = files[0]
    _no_formulas(xlsx)
    wb = openpyxl.load_workbook(xlsx)
    assert _text_cells_safe(wb) >= 4
    line = [c.value for c in wb["Supporting lines"][2]]
    assert HOSTILE_FILE in line and HOSTILE_SKU in line, line
    amount = wb["Discrepancies"]["P2"]
    assert amount.value == -150 and '"¥"#,##0;[Red]-' in amount.number_format
    for path in files[1:]:
        text = path.read_text()
        for bad in (HOSTILE_SKU, HOSTILE_FILE, "@cmd", "+1", "-2+3"):
            if bad in text:
                assert f"'{bad}" in text or f"\"'{bad}" in text.replace('""', '"'), bad
        with path.open(newline="") as f:
            for row in csv.reader(f):
                for cell in row:
                    # Numbers stay numbers (a negative amount is not text); text is inert.
                    if cell[:1] in ("=", "+", "@", "\t", "\r"):
                        pytest.fail(f"live formula text {cell!r} in {path.name}")
                    if cell.startswith("-"):
                        Decimal(cell)


def test_neutralize() -> None:
    assert neutralize("=1+1") == "'=1+1"
    assert neutralize("  +SUM(1)") == "'  +SUM(1)"
    assert neutralize("@x") == "'@x" and neutralize("\tx") == "'\tx" and neutralize("\rx") == "'\rx"
    assert neutralize("llama-3.1-8b") == "llama-3.1-8b"


def test_sheet_is_capped_and_the_csv_has_every_line(tmp_path: Path, monkeypatch) -> None:
    """Over the cap the sheet shows SHEET_LINES lines in order and a note; the CSV (written by
    DuckDB) has every line, formula-like SKUs neutralized, amounts rounded as numbers. The
    lines are read in slices smaller than the sheet's cap, so the cut falls inside one."""
    monkeypatch.setattr(line_files, "BATCH_ROWS", 999)
    grain = [
        {"partner": "acme", "period": "2026-10", "type": "unmapped_sku", "sku": HOSTILE_SKU,
         "currency": "USD", "billed_revenue": Decimal(1), "expected_share": Decimal(1),
         "reported_share": None, "amount": Decimal(-1), "discrepancy_id": "d1"},
    ]  # fmt: skip
    n = SHEET_LINES + 3
    lines = pa.table({
        "discrepancy_id": ["d1"] * n + ["other"], "side": ["billing"] * (n + 1),
        "source_row": list(range(1, n + 2)),
        "sku": [HOSTILE_SKU if i % 2 else "sku-a" for i in range(n + 1)],
        "tokens": pa.array([Decimal("2.5")] * (n + 1), pa.decimal128(38, 12)),
        "amount": pa.array([Decimal("-1.23456750")] * (n + 1), pa.decimal128(38, 12)),
        "currency": ["USD"] * (n + 1),
    })  # fmt: skip
    partner = partner_figures(grain, [_Outcome()])[0]
    pq.write_table(lines, tmp_path / "lines.parquet", row_group_size=2_500)
    xlsx, _, csv_path = write_packet(tmp_path, period="2026-10", run_id="r", partner=partner,
                                     grain=grain, lines=tmp_path / "lines.parquet")  # fmt: skip
    wb = openpyxl.load_workbook(xlsx, read_only=True)
    rows = list(wb["Supporting lines"].iter_rows(values_only=True))
    assert len(rows) == 1 + SHEET_LINES + 1  # header, the capped lines, the note
    assert [r[5] for r in rows[1:-1]] == list(range(1, SHEET_LINES + 1))  # input order
    note = "3 more lines not shown here: all 10,003 lines are in supporting_lines.csv"
    assert rows[-1][0] == note
    with csv_path.open(newline="") as f:
        body = list(csv.DictReader(f))
    assert [int(r["Row"]) for r in body] == list(range(1, n + 1))  # not the other partner's
    assert {r["SKU"] for r in body} == {"'" + HOSTILE_SKU, "sku-a"}
    assert {(r["Tokens"], r["Amount"], r["Type"]) for r in body} == {
        ("2", "-1.234568", "Unmapped SKU")  # half-even; a negative amount stays a number
    }
    assert csv_path.read_bytes().startswith(b"Discrepancy id,Type,Side,Snapshot,File,Row,")
    assert not list(csv_path.parent.glob(".*.tmp"))
