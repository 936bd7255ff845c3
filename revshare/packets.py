"""Dispute packets: per partner, what finance sends the partner to chase a difference.

``packets/<partner>/dispute_<period>_<partner>.xlsx`` (sheets Summary, Discrepancies,
Supporting lines) and the same rows as ``discrepancies.csv`` and ``supporting_lines.csv``.

Partner-supplied text (statement ids, SKUs, model ids, file names, explanations quoting them)
goes into spreadsheets that someone will open in Excel, so it is neutralized against formula
injection: in the workbook every text cell is a string cell with Excel's quote-prefix style
(shown exactly as sent, never evaluated, not even after an edit); in CSV, where no cell type
exists, text starting with ``= + - @``, tab or CR gets a leading apostrophe (OWASP's advice).
Money cells are real numbers, rounded half-even to the currency's minor unit, with a currency
number format; every total is the sum of the rounded rows it sums.

A packet's supporting lines can run to millions: DuckDB writes ``supporting_lines.csv`` from
the run's lines file in one pass, formatting the cells in SQL (no Python loop over lines), and
the workbook's "Supporting lines" sheet shows only the first ``SHEET_LINES`` of them, read a
slice at a time, then a note pointing to the CSV, which always has every line.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from revshare import lines as line_files
from revshare.db import connect
from revshare.discrepancies import MATCHED, TITLES
from revshare.money import add, excel_format, rounded
from revshare.report import NO_BILLING
from revshare.sqlutil import half_even, lit
from revshare.store import write_atomically

#: Leading characters that make Excel, LibreOffice or Sheets read a cell as a formula.
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r", "\n")
#: Supporting lines shown per partner in the workbook (a sheet is for reading, and openpyxl
#: writes about 10,000 rows a second); supporting_lines.csv always has every line.
SHEET_LINES = 10_000
#: The same leads as a regular expression, for Arrow and DuckDB (``-`` escaped in the class).
_LEAD_RE = "^ *[" + "".join("\\" + c if c in "-" else c for c in FORMULA_LEAD) + "]"

_HEAD_FONT, _TOTAL_FONT = Font(bold=True), Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="F4F6F9")


def neutralize(text: str) -> str:
    """For CSV: prefix an apostrophe when the text (after leading spaces) would be a formula."""
    return "'" + text if text.lstrip(" ").startswith(FORMULA_LEAD) else text


def _neutralized(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A text column with ``neutralize`` applied to every cell, in Arrow."""
    hit = pc.fill_null(pc.match_substring_regex(col, _LEAD_RE), False)
    return pc.if_else(hit, pc.binary_join_element_wise("'", col, ""), col)


def neutralized_table(table: pa.Table) -> pa.Table:
    """The same table with every text cell neutralized as ``neutralize`` does, column by column
    in Arrow (the results CSVs can hold every line of a month); numbers stay numbers."""
    cols = [
        _neutralized(c) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c
        for c in table.columns
    ]
    return pa.Table.from_arrays(cols, schema=table.schema)


# (header, key, kind): kind is "text", "money" (rounded, currency format), "qty", "rate",
# "exact" (a source amount shown with up to 6 decimals), "int" or "date".
DISC_COLUMNS = [
    ("Discrepancy id", "discrepancy_id", "text"), ("Type", "type_title", "text"),
    ("Model", "model_id", "text"), ("Unit", "unit", "text"), ("SKU", "sku", "text"),
    ("Region", "region", "text"), ("Statement id", "statement_id", "text"),
    ("Revision", "revision", "int"), ("Billed tokens", "billed_tokens", "qty"),
    ("Reported tokens", "reported_tokens", "qty"), ("Billed revenue", "billed_revenue", "money"),
    ("Reported revenue", "reported_revenue", "money"), ("Share rate", "share_rate", "rate"),
    ("Expected share", "expected_share", "money"), ("Reported share", "reported_share", "money"),
    ("Amount (reported − expected)", "amount", "money"), ("Currency", "currency", "text"),
    ("Billing snapshot", "billing_snapshot", "text"),
    ("Statement snapshot", "statement_snapshot", "text"), ("Explanation", "explanation", "text"),
]  # fmt: skip
LINE_COLUMNS = [
    ("Discrepancy id", "discrepancy_id", "text"), ("Type", "type_title", "text"),
    ("Side", "side", "text"), ("Snapshot", "snapshot_id", "text"),
    ("File", "source_file", "text"), ("Row", "source_row", "int"), ("Line id", "line_id", "text"),
    ("SKU", "sku", "text"), ("Region", "region", "text"),
    ("Charge category", "charge_category", "text"), ("Usage date", "usage_date", "date"),
    ("Tokens", "tokens", "qty"), ("Amount", "amount", "exact"), ("Currency", "currency", "text"),
]  # fmt: skip
SUMMARY_COLUMNS = [
    ("Type", "title", "text"), ("Count", "count", "int"),
    ("Expected share", "expected_share", "money"), ("Reported share", "reported_share", "money"),
    ("Amount (reported − expected)", "amount", "money"),
]  # fmt: skip


def _value(row: dict, key: str, kind: str, ccy: str | None) -> object:
    v = row.get(key)
    if v is None:
        return None
    if kind == "money":
        return rounded(v, ccy)
    if kind == "exact":
        return rounded(v, None, 6).normalize() if v else Decimal(0)
    if kind == "qty":
        return rounded(v, None, 0)
    return v


def _number_format(kind: str, ccy: str | None) -> str | None:
    return {
        "money": excel_format(ccy), "exact": excel_format(ccy, 6), "qty": "#,##0;[Red]-#,##0",
        "rate": "0.00##%", "int": "0", "date": "yyyy-mm-dd",
    }.get(kind)  # fmt: skip


class _Sheet:
    """A write-only sheet (memory stays flat however many lines) with a frozen, filtered,
    bold header and typed cells."""

    def __init__(self, wb: Workbook, title: str, columns: list[tuple[str, str, str]]) -> None:
        self.ws, self.columns, self.rows = wb.create_sheet(title), columns, 0
        for i, (head, _, kind) in enumerate(columns, 1):
            wide = 60 if head == "Explanation" else 18 if kind != "text" else 24
            self.ws.column_dimensions[get_column_letter(i)].width = wide
        self.preamble: list[list] = []
        # Formats per (kind, currency), looked up once per sheet: building one parses the
        # locale (babel), which cost 14 s of a 10M-line run's packets when done per cell.
        self.formats: dict[tuple[str, str | None], str | None] = {}

    def text(self, value: str, font: Font | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws, value=value)
        cell.data_type = "s"  # never a formula, whatever the text starts with
        cell.quotePrefix = True
        if font:
            cell.font = font
        return cell

    def number(self, value: object, fmt: str | None, font: Font | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws, value=value)
        if fmt:
            cell.number_format = fmt
        if font:
            cell.font = font
        return cell

    def cell(self, value: object, kind: str, ccy: str | None, font: Font | None = None):
        if value is None:
            return None
        if kind == "text" or isinstance(value, str):
            return self.text(str(value), font)
        if (kind, ccy) not in self.formats:
            self.formats[kind, ccy] = _number_format(kind, ccy)
        return self.number(value, self.formats[kind, ccy], font)

    def start(self, preamble: Iterable[list] = ()) -> None:
        preamble = list(preamble)
        self.header_row = len(preamble) + 1
        # Write-only sheets emit their view settings with the first row: freeze first.
        self.ws.freeze_panes = f"A{self.header_row + 1}"
        for line in preamble:
            self.ws.append(line)
        head = []
        for h, _, _ in self.columns:
            c = self.text(h, _HEAD_FONT)
            c.fill, c.alignment = _HEAD_FILL, Alignment(wrap_text=True, vertical="top")
            head.append(c)
        self.ws.append(head)
        self.rows = self.header_row

    def add(self, row: dict, font: Font | None = None) -> None:
        ccy = row.get("currency")
        self.ws.append([self.cell(_value(row, k, kind, ccy), kind, ccy, font)
                        for _, k, kind in self.columns])  # fmt: skip
        self.rows += 1

    def close_filter(self, last_data_row: int | None = None) -> None:
        end = last_data_row if last_data_row is not None else self.rows
        last = get_column_letter(len(self.columns))
        self.ws.auto_filter.ref = f"A{self.header_row}:{last}{max(end, self.header_row)}"


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return neutralize(value)
    return value


def _write_csv(path: Path, columns: list[tuple[str, str, str]], rows: Iterable[dict]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([h for h, _, _ in columns])
            for r in rows:
                ccy = r.get("currency")
                w.writerow([_csv_cell(_value(r, k, kind, ccy)) for _, k, kind in columns])

    write_atomically(path, write)


def _csv_cell_sql(name: str, kind: str, types: dict[str, pa.DataType]) -> str:
    """One supporting-line column as ``_csv_cell(_value(...))`` renders it, in DuckDB: text
    neutralized (empty text and null both an empty cell), ``qty`` half-even to whole units,
    ``exact`` half-even to 6 decimals without trailing zeros; ints and dates as they are."""
    if name not in types:
        return "NULL"
    col = f'"{name}"'
    if kind == "text":
        text = f"CAST({col} AS VARCHAR)"
        lead = f"regexp_matches({text}, {lit(_LEAD_RE)})"
        return f"CASE WHEN {lead} THEN concat('''', {text}) ELSE nullif({text}, '') END"
    if kind not in ("qty", "exact") or not pa.types.is_decimal(types[name]):
        return col
    if kind == "qty":
        return half_even(col, 0)
    # Decimal.normalize(): "1.500000" -> "1.5", "100.000000" -> "100", "0.000000" -> "0".
    text = f"regexp_replace(CAST({half_even(col, 6)} AS VARCHAR), '0+$', '')"
    return f"regexp_replace({text}, '\\.$', '')"


def _write_lines_csv(path: Path, lines: Path | None, titles: dict[str, str]) -> int:
    """``supporting_lines.csv``: every line of discrepancies ``titles`` in the file's order,
    each with its discrepancy's title. The same cells, order and CRLF line ends as the
    ``csv`` module writes; via a temporary name. Returns the lines written.

    One DuckDB pass over the lines file: formatting slices in Arrow, then staging them in
    Parquet for DuckDB to write, took 22 s for the 6.9 million lines of a 10M-line month."""
    types = {f.name: f.type for f in pq.read_schema(lines)} if lines else {}
    heads = [f'"{head}"' for head, _, _ in LINE_COLUMNS]
    if titles and "discrepancy_id" in types:
        ids = sorted(titles)
        title = " ".join(f"WHEN {lit(i)} THEN {lit(titles[i])}" for i in ids)
        cells = [
            f"CASE discrepancy_id {title} END" if key == "type_title"
            else _csv_cell_sql(key, kind, types)
            for _, key, kind in LINE_COLUMNS
        ]  # fmt: skip
        source = (
            f"SELECT {', '.join(f'{c} AS {h}' for c, h in zip(cells, heads, strict=True))} "
            f"FROM read_parquet({lit(lines)}) "
            f"WHERE discrepancy_id IN ({', '.join(lit(i) for i in ids)})"
        )
    else:
        source = f"SELECT {', '.join(f'NULL AS {h}' for h in heads)} LIMIT 0"
    tmp = path.with_name(f".{path.name}.tmp")
    con = connect()
    try:
        written = con.execute(
            f"COPY ({source}) TO {lit(tmp)} (HEADER, DELIMITER ',', QUOTE '\"', NEW_LINE '\\r\\n')"
        ).fetchone()[0]
    finally:
        con.close()
    tmp.replace(path)
    return written


def by_type(rows: list[dict], ccy: str) -> list[dict]:
    """The partner's grain rows summed per discrepancy type (matched: within tolerance); the
    sum of the returned amounts is the partner's net variance."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["type"]].append(r)
    return [
        {"title": "Within tolerance (matched)" if t == MATCHED else TITLES.get(t, t),
         "count": len(g), "currency": ccy,
         **{f: add((r.get(f) for r in g), ccy)
            for f in ("expected_share", "reported_share", "amount")}}
        for t, g in sorted(groups.items(), key=lambda kv: (kv[0] == MATCHED, kv[0]))
    ]  # fmt: skip


def _partner_lines(lines: Path | None, titles: dict[str, str]) -> Iterator[pa.RecordBatch]:
    """The lines behind these discrepancies, in the file's order, with ``type_title``, one
    slice at a time (a partner can have millions)."""
    if lines is None:
        return
    ids = pa.array(sorted(titles), pa.string())
    names = pa.array([titles[i] for i in ids.to_pylist()], pa.string())
    for part in line_files.batches(lines, ids.to_pylist()):
        if "type_title" in part.schema.names:
            part = part.drop_columns(["type_title"])
        title = pc.take(names, pc.index_in(part["discrepancy_id"], value_set=ids))
        yield part.append_column("type_title", title)


def _sheet_lines(parts: Iterator[pa.RecordBatch]) -> pa.Table:
    """The first SHEET_LINES lines, what the sheet shows; the slices after them are not read."""
    head: list[pa.RecordBatch] = []
    held = 0
    for part in parts:
        head.append(part.slice(0, SHEET_LINES - held))
        held += head[-1].num_rows
        if held >= SHEET_LINES:
            break
    return _table(head)


def _table(parts: list[pa.RecordBatch]) -> pa.Table:
    if not parts:
        return pa.table({k: pa.array([], pa.string()) for _, k, _ in LINE_COLUMNS})
    return pa.Table.from_batches(parts)


def write_packet(
    out: Path, *, period: str, run_id: str, partner: dict, grain: list[dict],
    lines: Path | None,
) -> list[Path]:  # fmt: skip
    """One partner's packet; ``partner`` is its headline (``report.partner_figures``) and
    ``grain`` its rows, matched or not. Returns the files written."""
    pid, ccy = partner["partner"], partner["currency"]
    folder = out / pid
    folder.mkdir(parents=True, exist_ok=True)
    disc = [{**r, "type_title": TITLES.get(r["type"], r["type"])}
            for r in grain if r["type"] != MATCHED]  # fmt: skip
    titles = {d["discrepancy_id"]: d["type_title"] for d in disc}
    wb = Workbook(write_only=True)
    wb.properties.creator = "revshare-recon"
    wb.properties.title = f"Revenue-share dispute {pid} {period}"

    summary = _Sheet(wb, "Summary", SUMMARY_COLUMNS)
    figures = [
        ("Partner", f"{partner['name']} ({pid})", "text"), ("Period", period, "text"),
        ("Run", run_id, "text"), ("Currency", ccy, "text"),
        ("Billed revenue", NO_BILLING if partner["billed_revenue"] is None
         else partner["billed_revenue"], "money"),
        ("Expected share", partner["expected_share"], "money"),
        ("Reported share", partner["reported_share"], "money"),
        ("Net variance (reported − expected)", partner["amount"], "money"),
        ("Discrepancies", partner["discrepancies"], "int"),
        ("Money at stake (sum of |amount|)", partner["at_stake"], "money"),
        ("Statement(s)", ", ".join(sorted({str(r["statement_id"]) for r in grain
                                           if r.get("statement_id")})), "text"),
    ]  # fmt: skip
    summary.start(
        [[summary.text(k, _HEAD_FONT), summary.cell(v, kind, ccy)] for k, v, kind in figures] + [[]]
    )
    types = by_type(grain, ccy)
    for t in types:
        summary.add(t)
    summary.close_filter()
    summary.add(
        {"title": "Total = net variance", "count": sum(t["count"] for t in types),
         "currency": ccy, **{f: sum((t[f] for t in types), Decimal(0))
                             for f in ("expected_share", "reported_share", "amount")}},
        _TOTAL_FONT,
    )  # fmt: skip

    sheet = _Sheet(wb, "Discrepancies", DISC_COLUMNS)
    sheet.start()
    for d in disc:
        sheet.add(d)
    sheet.close_filter()

    support = _Sheet(wb, "Supporting lines", LINE_COLUMNS)
    support.start()
    shown = _sheet_lines(_partner_lines(lines, titles))
    for line in shown.to_pylist():
        support.add(line)
    support.close_filter()
    total = _write_lines_csv(folder / "supporting_lines.csv", lines, titles)
    if total > shown.num_rows:
        support.ws.append([support.text(
            f"{total - shown.num_rows:,} more lines not shown here: all {total:,} lines are in "
            "supporting_lines.csv"
        )])  # fmt: skip

    xlsx = write_atomically(folder / f"dispute_{period}_{pid}.xlsx", wb.save)
    _write_csv(folder / "discrepancies.csv", DISC_COLUMNS, disc)
    return [xlsx, folder / "discrepancies.csv", folder / "supporting_lines.csv"]


def write_packets(
    out: Path, *, period: str, run_id: str, partners: list[dict], grain: list[dict],
    lines: dict[str, Path],
) -> list[Path]:  # fmt: skip
    """A packet for every reconciled partner with at least one discrepancy; ``lines`` is each
    partner's own lines file (reading the run's joined file would scan every partner's)."""
    written: list[Path] = []
    for p in partners:
        if p.get("discrepancies"):
            rows = [r for r in grain if r["partner"] == p["partner"]]
            written += write_packet(out, period=period, run_id=run_id, partner=p, grain=rows,
                                    lines=lines.get(p["partner"]))  # fmt: skip
    return written
