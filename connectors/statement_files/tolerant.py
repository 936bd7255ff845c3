"""Reading statements as partners really send them: tolerant of form, strict about money.

Headers are matched by alias (case, spaces and punctuation ignored); numbers may carry a
currency symbol or code, thousands separators and, for rates, a percent sign; dates and
periods may come in several common forms; units may say "1M input tokens". What cannot be
read is never guessed: a European decimal comma ("12,5") or an ambiguous date does not match
any accepted form, so the line is rejected with its file, row and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from revshare.sqlutil import lit

#: Header, lower-cased with everything but letters and digits removed -> our field.
ALIASES: dict[str, str] = {
    **{a: "statement_id" for a in ("statementid", "statement", "statementno",
                                   "statementnumber")},
    **{a: "revision" for a in ("revision", "rev", "version", "revisionnumber")},
    **{a: "issued_date" for a in ("issueddate", "issued", "issuedate", "dateissued",
                                  "statementdate")},
    **{a: "partner_id" for a in ("partnerid", "partner")},
    **{a: "period" for a in ("period", "billingperiod", "usagemonth", "month")},
    **{a: "model_id" for a in ("modelid", "model", "modelname", "licensedmodel")},
    **{a: "region" for a in ("region", "regionid", "location")},
    **{a: "unit" for a in ("unit", "units", "tokentype", "uom", "unitofmeasure")},
    **{a: "unit_size" for a in ("unitsize", "tokensperunit")},
    **{a: "quantity" for a in ("quantity", "qty", "usagequantity", "volume")},
    **{a: "gross_revenue" for a in ("grossrevenue", "revenue", "gross", "grossamount",
                                    "customerrevenue")},
    **{a: "share_rate" for a in ("sharerate", "rate", "revsharerate", "sharepercent",
                                 "sharepct")},
    **{a: "share_amount" for a in ("shareamount", "share", "amountdue", "revshare",
                                   "revshareamount", "licensorshare")},
    **{a: "currency" for a in ("currency", "ccy", "currencycode")},
    **{a: "unit_price" for a in ("unitprice", "price", "priceperunit", "listprice")},
    **{a: "total_share_amount" for a in ("totalshareamount", "totalshare", "totaldue",
                                         "statementtotal", "totalamountdue")},
}  # fmt: skip

_DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%d %b %Y", "%d %B %Y", "%b %d, %Y",
                 "%B %d, %Y"]  # fmt: skip
_PERIOD_FORMATS = ["%Y-%m", "%Y%m", "%Y/%m", "%b %Y", "%B %Y"]
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def header_map(headers: Iterable[str]) -> dict[str, str]:
    """Our field -> the header that carries it. Two headers for one field is an error."""
    out: dict[str, str] = {}
    for h in headers:
        field = ALIASES.get(_key(h))
        if field is None:
            continue  # extra columns are ignored
        if field in out:
            raise ValueError(f"columns {out[field]!r} and {h!r} both look like {field}")
        out[field] = h
    return out


def _q(header: str) -> str:
    return '"' + header.replace('"', '""') + '"'


def _number(t: str) -> str:
    """Currency symbol/code and thousands separators off; the rest must be a plain number."""
    t = f"trim(CAST({t} AS VARCHAR))"
    t = rf"regexp_replace({t}, '^([-+]?)\s*(?:[A-Z]{{3}}|[$€£¥])\s*', '\1')"
    t = rf"regexp_replace({t}, '\s*(?:[A-Z]{{3}}|[$€£¥])$', '')"
    grouped = r"'^[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$'"
    return f"CASE WHEN regexp_full_match({t}, {grouped}) THEN replace({t}, ',', '') ELSE {t} END"


def _rate(t: str) -> str:
    n = _number(f"rtrim(trim(CAST({t} AS VARCHAR)), '%')")
    return (
        f"CASE WHEN ends_with(trim(CAST({t} AS VARCHAR)), '%') "
        f"THEN CAST(TRY_CAST({n} AS DECIMAL(18,10)) * 0.01 AS VARCHAR) ELSE {n} END"
    )


def _date(t: str, formats: list[str], out: str) -> str:
    fmts = "[" + ", ".join(lit(f) for f in formats) + "]"
    return f"strftime(try_strptime(trim(CAST({t} AS VARCHAR)), {fmts}), {lit(out)})"


def _unit(t: str) -> tuple[str, str]:
    """(unit, unit size from the unit text) — "1M input tokens" -> (input_tokens, 1000000)."""
    low = rf"lower(trim(CAST({t} AS VARCHAR)))"
    size = (
        rf"CASE regexp_extract({low}, '^(?:per\s+)?(1k|1m|1000|1000000)\s', 1) "
        "WHEN '1k' THEN '1000' WHEN '1000' THEN '1000' WHEN '1m' THEN '1000000' "
        "WHEN '1000000' THEN '1000000' END"
    )
    kind = rf"regexp_replace({low}, '^(?:per\s+)?(?:1k|1m|1000|1000000)\s+', '')"
    base = rf"regexp_replace(regexp_replace({kind}, '[\s-]+', '_', 'g'), '_?tokens?$', '')"
    unit = (
        f"CASE {base} WHEN 'input' THEN 'input_tokens' WHEN 'output' THEN 'output_tokens' "
        "WHEN 'cached_input' THEN 'cached_input_tokens' "
        "WHEN 'cache_read' THEN 'cached_input_tokens' "
        "WHEN 'cache_write' THEN 'cache_write_tokens' WHEN '' THEN 'tokens' "
        f"WHEN 'total' THEN 'tokens' ELSE {low} END"
    )
    return unit, size


def tolerant_sql(raw: str, mapping: dict[str, str]) -> str:
    """Our fields, normalized as text, plus ``<field>__text`` holding what the file said."""

    def col(field: str) -> str:
        return _q(mapping[field]) if field in mapping else "NULL"

    unit, size_from_unit = _unit(col("unit"))
    exprs = {
        "statement_id": f"trim(CAST({col('statement_id')} AS VARCHAR))",
        "revision": _number(col("revision")),
        "issued_date": _date(col("issued_date"), _DATE_FORMATS, "%Y-%m-%d"),
        "partner_id": f"lower(trim(CAST({col('partner_id')} AS VARCHAR)))",
        "period": _date(col("period"), _PERIOD_FORMATS, "%Y-%m"),
        "model_id": f"trim(CAST({col('model_id')} AS VARCHAR))",
        "region": f"trim(CAST({col('region')} AS VARCHAR))",
        "unit": unit,
        "unit_size": f"coalesce(nullif({_number(col('unit_size'))}, ''), {size_from_unit})",
        "quantity": _number(col("quantity")),
        "gross_revenue": _number(col("gross_revenue")),
        "share_rate": _rate(col("share_rate")),
        "share_amount": _number(col("share_amount")),
        "unit_price": _number(col("unit_price")),
        "total_share_amount": _number(col("total_share_amount")),
        "currency": "CASE trim(CAST({c} AS VARCHAR)) ".format(c=col("currency"))
        + " ".join(f"WHEN {lit(s)} THEN {lit(code)}" for s, code in _SYMBOLS.items())
        + f" ELSE upper(trim(CAST({col('currency')} AS VARCHAR))) END",
    }
    texts = [f"CAST({col(f)} AS VARCHAR) AS {f}__text" for f in exprs]
    fields = [f"{e} AS {f}" for f, e in exprs.items()]
    return f"SELECT {', '.join(fields)}, {', '.join(texts)}, _row FROM ({raw})"


def _cell(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date().isoformat() if v.time() == datetime.min.time() else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return repr(v) if isinstance(v, float) else str(v)


def xlsx_sql(path: Path) -> str:
    """The first sheet of a workbook as a VALUES relation of text, with data row numbers.

    Statements are small (lines per model and region), so the sheet is inlined as quoted
    literals: the SQL stays self-contained and nothing is written beside the snapshot. Numeric
    cells come back as floats; their shortest repr is the decimal the partner typed."""
    from openpyxl import load_workbook

    sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
    rows = [[_cell(v) for v in r] for r in sheet.iter_rows(values_only=True)]
    rows = [r for r in rows if any(v not in (None, "") for v in r)]
    if not rows:
        raise ValueError("the workbook's first sheet is empty")
    header = [str(h) if h is not None else f"column{i}" for i, h in enumerate(rows[0])]
    body = rows[1:]
    if not body:
        raise ValueError("the workbook has a header but no lines")
    values = ", ".join(
        "(" + ", ".join("NULL" if v is None else lit(v) for v in (r + [None] * len(header))[
            :len(header)]) + f", {i})"
        for i, r in enumerate(body, start=1))  # fmt: skip
    cols = ", ".join([*(_q(h) for h in header), "_row"])
    return f"SELECT * FROM (VALUES {values}) AS t({cols})"
