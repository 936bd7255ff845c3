"""SQL and format sniffing for CUR 2.0 Parquet files.

Kept apart from the connector so the mapping native -> canonical reads as one table. Data
Exports lets a customer pick a subset of the 116 columns, so every column beyond ``REQUIRED``
is optional: a missing one becomes NULL, never an error.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from revshare.periods import Period
from revshare.schema import billing_select_sql
from revshare.sqlutil import exact_decimal, ident, lit, parquet_scan

#: Columns without which a line cannot be placed, priced or traced.
REQUIRED: tuple[str, ...] = (
    "bill_billing_period_start_date",
    "bill_billing_period_end_date",
    "bill_payer_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_currency_code",
)

# line_item_line_item_type -> FOCUS ChargeCategory. Types AWS may add later fall through to
# Adjustment (see README): kept and visible, never dropped, never guessed as Usage.
USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")
CREDIT_TYPES = (
    "Credit",
    "Refund",
    "EdpDiscount",
    "PrivateRateDiscount",
    "BundledDiscount",
    "DistributorDiscount",
    "Discount",
    "SavingsPlanNegation",
)
PURCHASE_TYPES = ("Fee", "RIFee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee")
TAX_TYPES = ("Tax",)

LEGACY_MESSAGE = (
    "this is a legacy AWS Cost and Usage Report (CUR), not a Data Exports CUR 2.0 export "
    "({why}); the CUR 2.0 reader cannot read it. Create a CUR 2.0 export in AWS Data Exports "
    "(or point this source at one)"
)


def legacy_reason(columns: list[str] | tuple[str, ...]) -> str | None:
    """Why these column names look like legacy CUR, or None.

    Legacy CSV names read ``lineItem/UsageStartDate``; legacy Parquet (the Athena flavour)
    flattens the product and tag maps into ``product_product_name`` and ``resource_tags_user_*``
    columns, which CUR 2.0 keeps as the ``product`` and ``resource_tags`` maps.
    """
    slashed = [c for c in columns if "/" in c]
    if slashed:
        return f"column names like {slashed[0]!r}"
    flat = [c for c in columns if c == "product_product_name" or c.startswith("resource_tags_")]
    if flat:
        return f"flattened map columns like {flat[0]!r}"
    return None


def csv_header(path: Path) -> list[str]:
    """The header of a CSV or CSV.gz file, split naively (enough to recognize legacy names)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:
        return [c.strip().strip('"') for c in f.readline().rstrip("\r\n").split(",")]


def parquet_schema(path: Path) -> pa.Schema:
    """Read only the footer; raises pyarrow's error if the file is not Parquet."""
    return pq.read_schema(path)


@dataclass(frozen=True)
class FileLayout:
    relpath: str
    path: Path
    types: Mapping[str, pa.DataType]

    def col(self, name: str) -> str:
        """The quoted column, or NULL when the export was defined without it."""
        return ident(name) if name in self.types else "NULL"

    def text(self, name: str) -> str:
        """A column as text, with AWS's empty strings read as missing."""
        if name not in self.types:
            return "NULL"
        return f"NULLIF(TRIM(CAST({ident(name)} AS VARCHAR)), '')"

    def number(self, name: str, cast: str = "CAST") -> str:
        """A double (or rate string) as the canonical DECIMAL, parsed exactly from its text.

        A double's shortest text form is the decimal AWS meant, so 0.1 lands as 0.1 rather than
        0.1000000000000000055; ``exact_decimal`` is the fast exact parse. ``cast="TRY_CAST"``
        gives NULL for text that is not a number.
        """
        return exact_decimal(self.text(name), cast) if name in self.types else "NULL"

    def ts(self, name: str) -> str:
        """A UTC instant: zoneless Parquet timestamps are UTC in CUR, whatever the session zone."""
        t = self.types.get(name)
        if t is None:
            return "NULL"
        if pa.types.is_timestamp(t) and t.tz is None:
            return f"make_timestamptz(epoch_us({ident(name)}))"
        if pa.types.is_timestamp(t):
            return ident(name)
        return f"CAST({ident(name)} AS TIMESTAMPTZ)"  # text with an explicit offset

    def map_value(self, name: str, key: str) -> str:
        t = self.types.get(name)
        return f"{ident(name)}[{lit(key)}]" if t is not None and pa.types.is_map(t) else "NULL"


def _in(expr: str, values: tuple[str, ...]) -> str:
    return f"{expr} IN ({', '.join(lit(v) for v in values)})"


def category_sql(line_type: str) -> str:
    return (
        f"CASE WHEN {_in(line_type, USAGE_TYPES)} THEN 'Usage' "
        f"WHEN {_in(line_type, TAX_TYPES)} THEN 'Tax' "
        f"WHEN {_in(line_type, CREDIT_TYPES)} THEN 'Credit' "
        f"WHEN {_in(line_type, PURCHASE_TYPES)} THEN 'Purchase' ELSE 'Adjustment' END"
    )


def period_literal(period: Period) -> str:
    return f"TIMESTAMPTZ '{period.start:%Y-%m-%d} 00:00:00+00'"


def scan_sql(path: Path) -> str:
    # No hive column from the BILLING_PERIOD=YYYY-MM/ folder: the file's own columns decide.
    return f"read_parquet({lit(path)}, file_row_number = true, hive_partitioning = false)"


@dataclass(frozen=True)
class Group:
    """Data files with the same columns and types, read by one scan (``parquet_scan``)."""

    files: tuple[FileLayout, ...]

    @property
    def lay(self) -> FileLayout:
        """The shared columns and types (the first file's)."""
        return self.files[0]

    @property
    def scan(self) -> str:
        return parquet_scan([(f.relpath, f.path) for f in self.files])

    #: The row's file as its relpath (``x_SourceFile``), a column of ``scan``.
    source_file = "_src_file"


def group_files(layouts: Sequence[FileLayout]) -> list[Group]:
    """The files by layout, each group in file order, groups in the order they first appear."""
    groups: dict[tuple[tuple[str, str], ...], list[FileLayout]] = {}
    for lay in layouts:
        groups.setdefault(tuple(sorted((k, str(v)) for k, v in lay.types.items())), []).append(lay)
    return [Group(tuple(files)) for files in groups.values()]


def check_sql(group: Group, period: Period) -> str:
    """The first file, row (1-based) and column of this period, or with no period, that lacks
    a value we need."""
    lay = group.lay
    cost = lay.col("line_item_unblended_cost")
    checks = [
        ("bill_billing_period_start_date", f"{lay.col('bill_billing_period_start_date')} IS NULL"),
        ("line_item_line_item_type", f"{lay.text('line_item_line_item_type')} IS NULL"),
        ("line_item_currency_code", f"{lay.text('line_item_currency_code')} IS NULL"),
        ("line_item_usage_start_date", f"{lay.col('line_item_usage_start_date')} IS NULL"),
        ("line_item_usage_end_date", f"{lay.col('line_item_usage_end_date')} IS NULL"),
        (
            "line_item_unblended_cost",
            f"{lay.number('line_item_unblended_cost', 'TRY_CAST')} IS NULL"
            if cost != "NULL"
            else "TRUE",
        ),
    ]
    for rate in ("line_item_unblended_rate", "pricing_public_on_demand_rate"):
        if rate in lay.types:
            checks.append(
                (
                    rate,
                    f"{lay.text(rate)} IS NOT NULL AND {lay.number(rate, 'TRY_CAST')} IS NULL",
                )
            )
    which = " ".join(f"WHEN {cond} THEN {lit(col)}" for col, cond in checks)
    in_scope = (
        f"{lay.col('bill_billing_period_start_date')} IS NULL "
        f"OR {lay.ts('bill_billing_period_start_date')} = {period_literal(period)}"
    )
    order = " ".join(f"WHEN {lit(f.relpath)} THEN {i}" for i, f in enumerate(group.files))
    return (
        f"SELECT f, r, c FROM (SELECT {group.source_file} AS f, file_row_number + 1 AS r, "
        f"CASE {which} END AS c FROM {group.scan} WHERE ({in_scope}) AND c IS NOT NULL) "
        f"ORDER BY CASE f {order} END, r LIMIT 1"
    )


def select_sql(group: Group, period: Period, partner_id: str, snapshot_id: str) -> str:
    """Canonical rows of ``period`` from one group of data files."""
    lay = group.lay
    line_type = lay.text("line_item_line_item_type")
    category = category_sql(line_type)
    row = "(file_row_number + 1)"
    cost = lay.number("line_item_unblended_cost")
    amount = lay.number("line_item_usage_amount")
    unit = f"COALESCE({lay.text('pricing_unit')}, {lay.text('product_pricing_unit')})"
    product = lay.col("line_item_product_code")
    marketplace = f"{lay.text('bill_billing_entity')} = 'AWS Marketplace'"
    exprs = {
        "AvailabilityZone": lay.text("line_item_availability_zone"),
        "BilledCost": cost,
        "BillingAccountId": lay.text("bill_payer_account_id"),
        "BillingAccountName": lay.text("bill_payer_account_name"),
        "BillingCurrency": lay.text("line_item_currency_code"),
        "BillingPeriodEnd": lay.ts("bill_billing_period_end_date"),
        "BillingPeriodStart": lay.ts("bill_billing_period_start_date"),
        "ChargeCategory": category,
        "ChargeDescription": lay.text("line_item_line_item_description"),
        "ChargeFrequency": (
            f"CASE WHEN {_in(line_type, USAGE_TYPES)} THEN 'Usage-Based' "
            f"WHEN {_in(line_type, ('RIFee', 'SavingsPlanRecurringFee'))} THEN 'Recurring' "
            "ELSE 'One-Time' END"
        ),
        "ChargePeriodEnd": lay.ts("line_item_usage_end_date"),
        "ChargePeriodStart": lay.ts("line_item_usage_start_date"),
        # FOCUS: consumption is only stated on Usage rows.
        "ConsumedQuantity": f"CASE WHEN {_in(line_type, USAGE_TYPES)} THEN {amount} END",
        "ConsumedUnit": f"CASE WHEN {_in(line_type, USAGE_TYPES)} THEN {unit} END",
        "ContractedCost": cost,
        "ContractedUnitPrice": lay.number("line_item_unblended_rate"),
        "EffectiveCost": f"COALESCE({lay.number('line_item_net_unblended_cost')}, {cost})",
        "InvoiceId": lay.text("bill_invoice_id"),
        "InvoiceIssuerName": f"COALESCE({lay.text('bill_invoicing_entity')}, 'AWS')",
        "ListCost": lay.number("pricing_public_on_demand_cost"),
        "ListUnitPrice": lay.number("pricing_public_on_demand_rate"),
        "PricingCategory": (
            f"CASE WHEN {_in(line_type, ('Usage',))} THEN 'Standard' "
            f"WHEN {_in(line_type, USAGE_TYPES[1:])} THEN 'Committed' END"
        ),
        "PricingCurrency": lay.text("pricing_currency"),
        "PricingQuantity": amount,
        "PricingUnit": unit,
        "ProviderName": "'AWS'",
        "PublisherName": (
            f"CASE WHEN {marketplace} THEN COALESCE({lay.text('line_item_legal_entity')}, "
            "'AWS Marketplace') ELSE 'AWS' END"
        ),
        "RegionId": lay.text("product_region_code"),
        "RegionName": lay.text("product_location"),
        "ResourceId": lay.text("line_item_resource_id"),
        "ServiceCategory": (
            f"CASE WHEN {_in(product, ('AmazonBedrock', 'AmazonSageMaker'))} "
            "THEN 'AI and Machine Learning' ELSE 'Other' END"
        ),
        "ServiceName": (
            f"COALESCE(NULLIF({lay.map_value('product', 'product_name')}, ''), "
            f"{lay.text('line_item_product_code')})"
        ),
        "ServiceSubcategory": f"CASE WHEN {product} = 'AmazonBedrock' THEN 'Generative AI' END",
        "SkuId": lay.text("product_sku"),
        "SkuPriceId": lay.text("pricing_rate_id"),
        "SubAccountId": lay.text("line_item_usage_account_id"),
        "SubAccountName": lay.text("line_item_usage_account_name"),
        "Tags": (
            f"CASE WHEN cardinality({lay.col('resource_tags')}) > 0 "
            f"THEN to_json({lay.col('resource_tags')}) END"
            if "resource_tags" in lay.types and pa.types.is_map(lay.types["resource_tags"])
            else "NULL"
        ),
        "x_PartnerId": lit(partner_id),
        # Tax and some credits carry no usage type; name them by line type and product so the
        # catalog sees a stable, readable key (never null).
        "x_SkuKey": (
            f"COALESCE({lay.text('line_item_usage_type')}, "
            f"{line_type} || ':' || COALESCE({lay.text('line_item_product_code')}, 'unknown'))"
        ),
        "x_NativeLineId": (
            f"COALESCE({lay.text('identity_line_item_id')}, "
            f"{group.source_file} || ':' || CAST({row} AS VARCHAR))"
        ),
        "x_SnapshotId": lit(snapshot_id),
        "x_SourceFile": group.source_file,
        "x_SourceRow": row,
    }
    return (
        f"SELECT\n  {billing_select_sql(exprs)}\nFROM {group.scan}\n"
        f"WHERE {in_period_sql(lay, period)}"
    )


def in_period_sql(lay: FileLayout, period: Period) -> str:
    """The row belongs to ``period``: the one filter between a data file and its lines."""
    return f"{lay.ts('bill_billing_period_start_date')} = {period_literal(period)}"
