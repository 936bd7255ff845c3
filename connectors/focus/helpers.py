"""SQL building for the FOCUS connector.

A FOCUS dataset is already in canonical shape, so the work here is about trust, not mapping:
read every file by header name (versions 1.0 to 1.3 differ in which columns exist, and vendors
order them as they like), turn text into exact decimals and UTC instants, and say precisely
which file, row and column is wrong when something is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from revshare.schema import CHARGE_CATEGORIES, FOCUS_13_RENAMES, FOCUS_COLUMNS, MONEY_SQL
from revshare.sqlutil import lit, lit_list

#: Data files we read; anything else under the folder (manifests, READMEs) is not data.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv.gz"),
    (".csv", "csv"),
    (".parquet", "parquet"),
)

#: Columns without which a row cannot become a canonical billing line. FOCUS marks more columns
#: mandatory, but requiring those would reject real exports for columns we never use.
REQUIRED: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ProviderName",
    "ServiceName",
)

#: Columns each version introduced (from focus_1_2_columns.csv and the 1.3 renames). A file's
#: version is the newest whose markers it carries; conditional columns may be absent, so this
#: is a lower bound, used only to name the version in messages.
_VERSION_MARKERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("1.3", frozenset({*FOCUS_13_RENAMES, "HostProviderName"})),
    (
        "1.2",
        frozenset(
            {
                "BillingAccountType",
                "InvoiceId",
                "PricingCurrency",
                "PricingCurrencyContractedUnitPrice",
                "PricingCurrencyEffectiveCost",
                "PricingCurrencyListUnitPrice",
                "SubAccountType",
            }
        ),
    ),
    (
        "1.1",
        frozenset(
            {
                "CapacityReservationId",
                "CapacityReservationStatus",
                "CommitmentDiscountQuantity",
                "CommitmentDiscountUnit",
                "ServiceSubcategory",
                "SkuMeter",
                "SkuPriceDetails",
            }
        ),
    ),
    ("1.0", frozenset({"ChargeClass", "ContractedCost", "ConsumedQuantity", "RegionId"})),
)

#: Headers that give away a known non-FOCUS export, for a specific rejection message.
_OTHER_FORMATS: tuple[tuple[str, str], ...] = (
    ("lineItem/intervalUsageStart", "an OCI cost report"),
    ("lineItem/", "a legacy AWS Cost and Usage Report (lineItem/... columns)"),
    ("line_item_", "an AWS CUR 2.0 export (line_item_... columns)"),
    ("costInBillingCurrency", "an Azure cost details export"),
    ("CostInBillingCurrency", "an Azure cost details export"),
    ("MeterCategory", "an Azure cost details export"),
    ("cost_type", "a Google Cloud billing export"),
)

_DECIMAL = {c.name for c in FOCUS_COLUMNS if pa.types.is_decimal(c.type)}
_TIME = {c.name for c in FOCUS_COLUMNS if pa.types.is_timestamp(c.type)}
FOCUS_NAMES: frozenset[str] = frozenset(c.name for c in FOCUS_COLUMNS)

# A text timestamp with an explicit zone. DuckDB's cast to TIMESTAMP drops an offset silently,
# so zoned text goes through TIMESTAMPTZ and zoneless text is read as UTC (FOCUS says UTC).
_ZONED = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$"


def data_format(name: str) -> str | None:
    """'csv', 'csv.gz' or 'parquet' for a data file name, else None."""
    low = name.lower()
    return next((fmt for suffix, fmt in SUFFIXES if low.endswith(suffix)), None)


def scan_sql(path: Path, fmt: str) -> str:
    """A FROM item over one file whose LAST column is the 1-based (CSV) or 0-based (Parquet)
    physical row number.

    CSV: every column as text (so money never passes through a double), the sample's literal
    NULL and empty fields as null, and WITH ORDINALITY, which numbers rows in the order the
    reader returns them, i.e. file order (DuckDB computes it as row_number() OVER () on the
    source, an order-preserving operator). Parquet: the reader's own file_row_number.
    Hive partitioning is off: AWS exports sit under ``BILLING_PERIOD=YYYY-MM/`` folders, and
    DuckDB would otherwise append that as a column after the row number.
    """
    if fmt == "parquet":
        return f"read_parquet({lit(path)}, file_row_number = true, hive_partitioning = false)"
    return (
        f"(SELECT * FROM read_csv({lit(path)}, header = true, all_varchar = true, "
        "hive_partitioning = false, "
        f"nullstr = {lit_list(['NULL', ''])}, strict_mode = true) WITH ORDINALITY)"
    )


def q(name: str) -> str:
    """Quote a header name as an identifier (headers come from files, not config)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class FileLayout:
    """What one file holds: its columns (name -> DuckDB type) and its row-number expression."""

    relpath: str
    fmt: str
    columns: Mapping[str, str]
    row_expr: str
    version: str

    def has(self, name: str) -> bool:
        return name in self.columns

    @property
    def label(self) -> str:
        return f"FOCUS {self.version} {self.fmt} file"


def detect_version(columns: set[str]) -> str:
    for version, markers in _VERSION_MARKERS:
        if columns & markers:
            return version
    return "1.0-preview or older"


def not_focus_reason(columns: set[str]) -> str | None:
    """Why a file is not FOCUS at all, or None if it looks like FOCUS (maybe incomplete)."""
    core = {
        "BilledCost",
        "BillingCurrency",
        "BillingPeriodStart",
        "ChargeCategory",
        "ChargePeriodStart",
        "BillingAccountId",
    }
    if len(columns & core) >= 2:
        return None
    for marker, what in _OTHER_FORMATS:
        if any(c.startswith(marker) for c in columns):
            return f"not a FOCUS file: it looks like {what}"
    return "not a FOCUS file: none of BilledCost, ChargeCategory, BillingPeriodStart found"


def source_name(layout: FileLayout, canonical: str) -> str | None:
    """The file's column for a canonical one (1.3's ServiceProviderName -> ProviderName)."""
    if canonical == "ProviderName":
        for new, old in FOCUS_13_RENAMES.items():
            if old == canonical and layout.has(new):
                return new
    return canonical if layout.has(canonical) else None


def decimal_expr(col: str, duck_type: str) -> str:
    """Text for DuckDB's exact decimal cast. Doubles go through their shortest round-trip text,
    because a direct DOUBLE -> DECIMAL cast scales in binary and can move the last digit."""
    t = duck_type.upper()
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return f"CAST({q(col)} AS VARCHAR)"
    if t == "VARCHAR" or t.startswith("DECIMAL") or t.endswith("INT") or t in ("BIGINT", "HUGEINT"):
        return q(col)
    raise TypeError(f"a {duck_type} column cannot hold a FOCUS decimal")


def time_expr(col: str, duck_type: str, cast: str = "CAST") -> str:
    """An instant (TIMESTAMPTZ) from text or a Parquet timestamp; zoneless means UTC."""
    t = duck_type.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE"):
        return q(col)
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"timezone('UTC', CAST({q(col)} AS TIMESTAMP))"
    if t == "VARCHAR":
        c = q(col)
        return (
            f"(CASE WHEN regexp_matches({c}, {lit(_ZONED)}) THEN {cast}({c} AS TIMESTAMPTZ) "
            f"ELSE timezone('UTC', {cast}({c} AS TIMESTAMP)) END)"
        )
    raise TypeError(f"a {duck_type} column cannot hold a FOCUS date/time")


def text_expr(col: str, duck_type: str) -> str:
    """Strings as they are; Parquet maps/structs (Tags, SkuPriceDetails) as JSON text."""
    t = duck_type.upper()
    if t == "VARCHAR":
        return q(col)
    if t.startswith(("MAP", "STRUCT", "JSON")) or t.endswith("[]"):
        return f"CAST(to_json({q(col)}) AS VARCHAR)"
    return f"CAST({q(col)} AS VARCHAR)"


def value_expr(layout: FileLayout, canonical: str, cast: str = "CAST") -> str | None:
    """SQL for one canonical FOCUS column from this file, or None if the file lacks it.

    Raises TypeError for a column whose type cannot carry the value (the caller names the file).
    """
    col = source_name(layout, canonical)
    if col is None:
        return None
    duck_type = layout.columns[col]
    if canonical in _DECIMAL:
        return decimal_expr(col, duck_type)
    if canonical in _TIME:
        return time_expr(col, duck_type, cast)
    expr = text_expr(col, duck_type)
    if canonical == "ProviderName" and col != canonical and layout.has(canonical):
        # A 1.3 file may still carry the deprecated name; the new one wins where filled.
        expr = f"COALESCE({expr}, {text_expr(canonical, layout.columns[canonical])})"
    return expr


def sku_key_expr(layout: FileLayout, sku_column: str) -> str:
    """x_SkuKey: the configured column, else ChargeDescription, else a constant per category,
    so the catalog always sees a non-null native string (tax and credits carry no SKU)."""
    parts = [
        f"NULLIF(trim({text_expr(col, layout.columns[col])}), '')"
        for col in (sku_column, "ChargeDescription")
        if layout.has(col)
    ]
    parts.append(f"{text_expr('ChargeCategory', layout.columns['ChargeCategory'])} || ' (no SKU)'")
    return f"COALESCE({', '.join(parts)})"


def check_sql(layout: FileLayout, scan: str) -> str:
    """A query returning the first bad row of a file as (row, column, value, problem), or nothing.

    Run before the SELECT so that a bad value becomes a SourceError naming file, row and
    column, instead of a DuckDB cast error from the middle of a scan.
    """
    cases: list[tuple[str, str, str]] = []  # (condition, column, problem)
    for name in sorted(_DECIMAL):
        col = source_name(layout, name)
        if col is not None:
            expr = decimal_expr(col, layout.columns[col])
            cases.append(
                (
                    f"{q(col)} IS NOT NULL AND TRY_CAST({expr} AS {MONEY_SQL}) IS NULL",
                    col,
                    "is not a decimal number",
                )
            )
    for name in sorted(_TIME):
        col = source_name(layout, name)
        if col is not None:
            expr = time_expr(col, layout.columns[col], cast="TRY_CAST")
            cases.append((f"{q(col)} IS NOT NULL AND {expr} IS NULL", col, "is not a date/time"))
    for name in REQUIRED:
        col = source_name(layout, name)
        expr = value_expr(layout, name, cast="TRY_CAST")
        assert col is not None and expr is not None  # presence checked by the caller
        cases.append((f"{expr} IS NULL", col, "is empty, but FOCUS requires a value"))
    cat = text_expr("ChargeCategory", layout.columns["ChargeCategory"])
    cases.append(
        (
            f"{cat} NOT IN ({', '.join(lit(c) for c in CHARGE_CATEGORIES)})",
            "ChargeCategory",
            f"is not one of {', '.join(CHARGE_CATEGORIES)}",
        )
    )
    when_col = " ".join(f"WHEN {c} THEN {lit(col)}" for c, col, _ in cases)
    when_val = " ".join(f"WHEN {c} THEN CAST({q(col)} AS VARCHAR)" for c, col, _ in cases)
    when_why = " ".join(f"WHEN {c} THEN {lit(why)}" for c, _, why in cases)
    return (
        f"SELECT src_row, bad_col, bad_val, why FROM (SELECT {layout.row_expr} AS src_row, "
        f"CASE {when_col} END AS bad_col, CASE {when_val} END AS bad_val, "
        f"CASE {when_why} END AS why FROM {scan} AS src) "
        f"WHERE bad_col IS NOT NULL ORDER BY src_row LIMIT 1"
    )
