"""The statement reader: tolerant of CSV and JSON forms, strict about what matters."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.base import NormalizeContext
from connectors.statement_files import StatementFilesConnector
from revshare.db import connect
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.schema import STATEMENT_SCHEMA

pytestmark = pytest.mark.integration
P = Period.parse("2026-10")
HEADER = (
    "statement_id,revision,issued_date,partner_id,period,model_id,region,unit,unit_size,"
    "quantity,gross_revenue,share_rate,share_amount,currency"
)
ROW2 = "S1,1,2026-11-05,aws,2026-10,llama-3.3-70b,us-east-1,output_tokens,1,77,0.10,0.15,0.015,usd"
ROW1 = ROW2.replace(
    "output_tokens,1,77,0.10,0.15,0.015,usd", "input_tokens,1000,2500.5,1.80,0.15,0.27,USD"
)


def _read(folder: Path):
    c = StatementFilesConnector(
        StatementFilesConnector.settings_model(type="statement_files", path=str(folder)),
        folder,
        "aws/statement",
    )
    d = c.locate(P)
    ctx = NormalizeContext("aws", P, "sT", folder / str(P), tuple(f.relpath for f in d.files))
    return connect().sql(c.normalize_sql(ctx)).to_arrow_table()


def _write(tmp: Path, name: str, text: str) -> Path:
    (tmp / str(P)).mkdir(parents=True, exist_ok=True)
    (tmp / str(P) / name).write_text(text)
    return tmp


def test_csv_and_json_revisions_are_both_kept_with_lineage(tmp_path: Path) -> None:
    _write(tmp_path, "s-r1.csv", "\n".join([HEADER, ROW1, ROW2]) + "\n")
    _write(tmp_path, "s-r2.json", json.dumps({
        "statement_id": "S1", "revision": 2, "issued_date": "2026-11-09", "partner_id": "aws",
        "period": "2026-10", "currency": "USD",
        "lines": [{"model_id": "llama-4-scout", "region": "us-east-1", "unit": "input_tokens",
                   "quantity": "10", "gross_revenue": "0.01", "share_rate": "0.15",
                   "share_amount": "0.0015"}]}))  # fmt: skip
    t = _read(tmp_path)
    assert [(f.name, f.type) for f in t.schema] == [(f.name, f.type) for f in STATEMENT_SCHEMA]
    rows = t.to_pylist()
    assert [(r["Revision"], r["x_SourceFile"], r["x_SourceRow"]) for r in rows] == [
        (1, "s-r1.csv", 1),
        (1, "s-r1.csv", 2),
        (2, "s-r2.json", 1),
    ]
    assert rows[0]["x_Tokens"] == Decimal(2_500_500)  # 2500.5 thousand tokens
    assert rows[1]["Currency"] == "USD" and rows[1]["ShareAmount"] == Decimal("0.015")
    assert rows[2]["Currency"] == "USD"  # header currency applies to the lines


@pytest.mark.parametrize(
    ("row", "column", "needle"),
    [
        (ROW2.replace(",77,", ",seventy,"), "quantity", "'seventy'"),
        (ROW2.replace(",0.10,", ",,"), "gross_revenue", "empty"),
        (ROW2.replace("2026-10,", "2026-09,", 1), "period", "2026-09"),
    ],
)
def test_a_value_that_cannot_be_read_names_file_row_and_column(
    tmp_path: Path, row: str, column: str, needle: str
) -> None:
    _write(tmp_path, "bad.csv", "\n".join([HEADER, ROW1, row]) + "\n")
    with pytest.raises(SourceError) as exc:
        _read(tmp_path)
    assert (exc.value.file, exc.value.row, exc.value.column) == ("bad.csv", 2, column)
    assert needle in str(exc.value)


def test_missing_column_and_missing_statement(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no statement for 2026-10"):
        _read(tmp_path)
    _write(tmp_path, "x.csv", HEADER.replace(",share_amount", "") + "\n")
    with pytest.raises(SourceError, match="share_amount"):
        _read(tmp_path)


TOLERANT = (
    "Statement No,Rev,Issued,Partner,Month,Model,Location,Unit,Qty,Revenue,Rate,Share,CCY,Notes\n"
    'S9,2,05 Nov 2026,AWS,Oct 2026,llama-3.3-70b,us-east-1,1M input tokens,2.5,"$1,234.50",'
    '15%,"USD 185.18",$,first line\n'
    "S9,2,2026/11/05,aws,202610,llama-3.3-70b,us-east-1,Output,77,0.10,0.15,0.015 USD,usd,\n"
)


def test_statements_as_partners_send_them_are_read_exactly(tmp_path: Path) -> None:
    _write(tmp_path, "s.csv", TOLERANT)
    rows = _read(tmp_path).to_pylist()
    first, second = rows
    assert first["StatementId"] == "S9" and first["Revision"] == 2
    assert str(first["IssuedDate"]) == "2026-11-05" and first["x_PartnerId"] == "aws"
    assert first["x_Unit"] == "input_tokens" and first["x_Tokens"] == Decimal(2_500_000)
    assert first["GrossRevenue"] == Decimal("1234.50") and first["ShareRate"] == Decimal("0.15")
    assert first["ShareAmount"] == Decimal("185.18") and first["Currency"] == "USD"
    assert second["x_Unit"] == "output_tokens" and second["x_Tokens"] == Decimal(77)
    assert second["ShareAmount"] == Decimal("0.015") and second["Currency"] == "USD"


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        (',"$1,234.50",', ',"12,5",', "Revenue"),  # a decimal comma is never guessed
        ("05 Nov 2026", "11/05/2026", "Issued"),  # month/day order is ambiguous: refused
        (",2.5,", ",2.5 tokens,", "Qty"),
    ],
)
def test_what_cannot_be_read_is_refused_with_the_partners_column(
    tmp_path: Path, old: str, new: str, column: str
) -> None:
    _write(tmp_path, "s.csv", TOLERANT.replace(old, new, 1))
    with pytest.raises(SourceError) as exc:
        _read(tmp_path)
    assert (exc.value.file, exc.value.row, exc.value.column) == ("s.csv", 1, column)


def test_two_columns_for_one_field_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "s.csv", TOLERANT.replace(",Notes", ",Share Amount"))
    with pytest.raises(SourceError, match="both look like share_amount"):
        _read(tmp_path)


def test_xlsx_statement_reads_like_the_csv(tmp_path: Path) -> None:
    from openpyxl import Workbook

    csv_dir, xlsx_dir = tmp_path / "c", tmp_path / "x"
    _write(csv_dir, "s.csv", "\n".join([HEADER, ROW1, ROW2]) + "\n")
    wb = Workbook()
    ws = wb.active
    ws.append(["Partner revenue-share statement"])  # a title row is not taken for the header
    ws.append([])
    for line in [HEADER, ROW1, ROW2]:
        ws.append([float(v) if v.replace(".", "", 1).isdigit() and "." in v else v
                   for v in line.split(",")])  # fmt: skip
    (xlsx_dir / str(P)).mkdir(parents=True)
    wb.save(xlsx_dir / str(P) / "s.xlsx")
    with pytest.raises(SourceError, match="lacks column"):  # the title row is not a header
        _read(xlsx_dir)
    ws.delete_rows(1, 2)
    wb.save(xlsx_dir / str(P) / "s.xlsx")
    want = _read(csv_dir).drop_columns(["x_SourceFile"])
    got = _read(xlsx_dir).drop_columns(["x_SourceFile"])
    assert got.to_pylist() == want.to_pylist()
