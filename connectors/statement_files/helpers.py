"""SQL for the statement format (docs/statement-format.md).

Everything is read as text first and converted with TRY_CAST, so a value that does not parse
is reported with its file, row and column instead of failing the whole read or being guessed.
"""

from __future__ import annotations

from revshare.schema import statement_select_sql
from revshare.sqlutil import lit

#: Columns of a statement line, in the template's order. Header fields repeat on every CSV row.
LINE_COLUMNS = (
    "statement_id", "revision", "issued_date", "partner_id", "period", "model_id", "region",
    "unit", "unit_size", "quantity", "gross_revenue", "share_rate", "share_amount", "currency",
    "unit_price", "total_share_amount",
)  # fmt: skip
#: Header fields: in JSON they sit on the statement object, in CSV/XLSX they repeat per line.
HEADER_COLUMNS = ("statement_id", "revision", "issued_date", "partner_id", "period", "currency",
                  "total_share_amount")  # fmt: skip
OPTIONAL = ("region", "unit_size", "unit_price", "total_share_amount")
REQUIRED = tuple(c for c in LINE_COLUMNS if c not in OPTIONAL)
#: Columns that must parse as numbers or dates, with the SQL type they must parse as.
TYPED = {
    "revision": "BIGINT",
    "issued_date": "DATE",
    "unit_size": "BIGINT",
    "quantity": "DECIMAL(38,12)",
    "gross_revenue": "DECIMAL(38,12)",
    "share_rate": "DECIMAL(18,10)",
    "share_amount": "DECIMAL(38,12)",
    "unit_price": "DECIMAL(38,12)",
    "total_share_amount": "DECIMAL(38,12)",
}


def raw_csv_sql(path: str) -> str:
    """Rows as text, with their 1-based data row number (header excluded).

    DuckDB's CSV reader keeps file order for one file when insertion order is preserved (the
    default), which the connector tests check against the file's own lines.
    """
    return (
        f"SELECT *, CAST(row_number() OVER () AS BIGINT) AS _row FROM read_csv({lit(path)}, "
        "all_varchar=true, header=true, auto_detect=true, strict_mode=true)"
    )


def raw_json_sql(path: str) -> str:
    """The JSON form: a header object with a ``lines`` array; header fields apply to all lines."""
    head = ", ".join(
        f"CAST(json_extract_string(to_json(j), '$.{c}') AS VARCHAR) AS {c}" for c in HEADER_COLUMNS
    )
    return (
        f"SELECT {head}, u.line, CAST(u.i AS BIGINT) AS _row FROM "
        f"read_json({lit(path)}, format='auto', records=true) j, "
        "LATERAL (SELECT unnest(j.lines) AS line, "
        "generate_subscripts(j.lines, 1) AS i) u"
    )


def json_lines_sql(path: str) -> str:
    """Flatten JSON statement lines to the CSV's text columns (line fields win over header)."""
    cols = []
    for c in LINE_COLUMNS:
        expr = f"CAST(json_extract_string(to_json(line), '$.{c}') AS VARCHAR)"
        if c in HEADER_COLUMNS:
            cols.append(f"coalesce({expr}, {c}) AS {c}" if c in ("currency",) else c)
        else:
            cols.append(f"{expr} AS {c}")
    return "SELECT " + ", ".join(cols) + f", _row FROM ({raw_json_sql(path)})"


def canonical_sql(raw: str, relpath: str, snapshot_id: str) -> str:
    exprs = {
        "StatementId": "statement_id",
        "Revision": "revision",
        "IssuedDate": "issued_date",
        "x_PartnerId": "partner_id",
        "BillingPeriodStart": "strptime(period || '-01', '%Y-%m-%d') AT TIME ZONE 'UTC'",
        "x_ModelId": "model_id",
        "RegionId": "region",
        "x_Unit": "unit",
        "x_Tokens": f"CAST(quantity AS {TYPED['quantity']}) * coalesce(unit_size::BIGINT, 1)",
        "GrossRevenue": "gross_revenue",
        "ShareRate": "share_rate",
        "ShareAmount": "share_amount",
        "Currency": "upper(trim(currency))",
        "x_UnitPrice": "nullif(unit_price, '')",
        "x_Quantity": "quantity",
        "x_StatementTotalShare": "nullif(total_share_amount, '')",
        "x_SnapshotId": lit(snapshot_id),
        "x_SourceFile": lit(relpath),
        "x_SourceRow": "_row",
    }
    return f"SELECT {statement_select_sql(exprs)} FROM ({raw})"
