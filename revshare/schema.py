"""The canonical schemas, defined once.

Billing lines follow FOCUS 1.2 column names and types; our own columns carry the ``x_`` prefix.
Every connector, suite, query and report derives its column list from here. Money and quantities
are fixed-scale DECIMALs: cloud exports carry floats, and we convert them exactly once, at
normalization, with an explicit rounding rule (half-even, see ``decimal_sql``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

#: Scale of every money column after normalization. 12 places keep per-token prices exact
#: (FOCUS samples carry 11), while DECIMAL(38, 12) still holds 10^26 of any currency.
MONEY_SCALE = 12
MONEY_PRECISION = 38
#: Quantities (tokens, 1K tokens, credits) use the same exact type.
QUANTITY_SCALE = 12

MONEY_SQL = f"DECIMAL({MONEY_PRECISION},{MONEY_SCALE})"
QUANTITY_SQL = f"DECIMAL({MONEY_PRECISION},{QUANTITY_SCALE})"
#: Share rates and FX rates: six places are what contracts and rate sheets quote.
RATE_SQL = "DECIMAL(18,10)"

_MONEY = pa.decimal128(MONEY_PRECISION, MONEY_SCALE)
_QTY = pa.decimal128(MONEY_PRECISION, QUANTITY_SCALE)
_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()

_ARROW_TO_SQL = {
    _MONEY: MONEY_SQL,
    _STR: "VARCHAR",
    _TS: "TIMESTAMPTZ",
    pa.int64(): "BIGINT",
    pa.date32(): "DATE",
    pa.bool_(): "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True
    doc: str = ""

    @property
    def sql_type(self) -> str:
        return _ARROW_TO_SQL[self.type]


def _c(name: str, typ: pa.DataType, nullable: bool = True, doc: str = "") -> Column:
    return Column(name, typ, nullable, doc)


# FOCUS 1.2: all 57 columns, in the specification's order, with the spec's nullability.
# Decimal -> MONEY (or QUANTITY for quantities), Date/Time -> TIMESTAMPTZ, JSON -> VARCHAR.
FOCUS_COLUMNS: tuple[Column, ...] = (
    _c("AvailabilityZone", _STR),
    _c("BilledCost", _MONEY, False, "Charge in BillingCurrency, what the invoice shows."),
    _c("BillingAccountId", _STR, False),
    _c("BillingAccountName", _STR),
    _c("BillingAccountType", _STR),
    _c("BillingCurrency", _STR, False),
    _c("BillingPeriodEnd", _TS, False),
    _c("BillingPeriodStart", _TS, False),
    _c("CapacityReservationId", _STR),
    _c("CapacityReservationStatus", _STR),
    _c("ChargeCategory", _STR, False, "Usage, Purchase, Tax, Credit or Adjustment."),
    _c("ChargeClass", _STR, True, "Null, or Correction for a change to an invoiced period."),
    _c("ChargeDescription", _STR),
    _c("ChargeFrequency", _STR),
    _c("ChargePeriodEnd", _TS, False),
    _c("ChargePeriodStart", _TS, False),
    _c("CommitmentDiscountCategory", _STR),
    _c("CommitmentDiscountId", _STR),
    _c("CommitmentDiscountName", _STR),
    _c("CommitmentDiscountQuantity", _QTY),
    _c("CommitmentDiscountStatus", _STR),
    _c("CommitmentDiscountType", _STR),
    _c("CommitmentDiscountUnit", _STR),
    _c("ConsumedQuantity", _QTY),
    _c("ConsumedUnit", _STR),
    _c("ContractedCost", _MONEY),
    _c("ContractedUnitPrice", _MONEY),
    _c("EffectiveCost", _MONEY),
    _c("InvoiceId", _STR),
    _c("InvoiceIssuerName", _STR),
    _c("ListCost", _MONEY),
    _c("ListUnitPrice", _MONEY),
    _c("PricingCategory", _STR),
    _c("PricingCurrency", _STR),
    _c("PricingCurrencyContractedUnitPrice", _MONEY),
    _c("PricingCurrencyEffectiveCost", _MONEY),
    _c("PricingCurrencyListUnitPrice", _MONEY),
    _c("PricingQuantity", _QTY),
    _c("PricingUnit", _STR),
    _c("ProviderName", _STR),
    _c("PublisherName", _STR),
    _c("RegionId", _STR),
    _c("RegionName", _STR),
    _c("ResourceId", _STR),
    _c("ResourceName", _STR),
    _c("ResourceType", _STR),
    _c("ServiceCategory", _STR),
    _c("ServiceName", _STR),
    _c("ServiceSubcategory", _STR),
    _c("SkuId", _STR),
    _c("SkuMeter", _STR),
    _c("SkuPriceDetails", _STR),
    _c("SkuPriceId", _STR),
    _c("SubAccountId", _STR),
    _c("SubAccountName", _STR),
    _c("SubAccountType", _STR),
    _c("Tags", _STR),
)

# Our extensions. x_SkuKey is the native string the model catalog matches (usage type, SKU
# description, meter name or Cortex model name); x_ModelId and x_Unit are filled by the catalog.
EXTENSION_COLUMNS: tuple[Column, ...] = (
    _c("x_PartnerId", _STR, False, "Partner that owes the share (config id)."),
    _c("x_SkuKey", _STR, True, "Native string the catalog maps to a licensed model and unit."),
    _c("x_ModelId", _STR, True, "Licensed model, from the catalog; null if not a licensed model."),
    _c("x_Unit", _STR, True, "Token kind: input_tokens, output_tokens, cached_input_tokens..."),
    _c("x_Tokens", _QTY, True, "Quantity in single tokens, from the catalog's unit size."),
    _c(
        "x_CatalogStatus",
        _STR,
        True,
        "mapped, unmapped (licensor's line, no rule) or out_of_scope.",
    ),
    _c(
        "x_NativeLineId",
        _STR,
        False,
        "The source's own line id, or one synthesized from file and row where it has none "
        "(file:row, plus :sub for rows a native row expands into). Unique within a snapshot.",
    ),
    _c("x_SnapshotId", _STR, False, "Immutable landing snapshot the line was read from."),
    _c("x_SourceFile", _STR, False, "File inside the snapshot, relative to its root."),
    _c("x_SourceRow", pa.int64(), False, "1-based data row inside x_SourceFile."),
)

BILLING_COLUMNS: tuple[Column, ...] = FOCUS_COLUMNS + EXTENSION_COLUMNS
BILLING_SCHEMA = pa.schema([pa.field(c.name, c.type, c.nullable) for c in BILLING_COLUMNS])

#: Columns a connector must fill; the others may stay null. x_ModelId/x_Unit/x_Tokens come
#: from the catalog, after the connector.
BILLING_REQUIRED: tuple[str, ...] = tuple(c.name for c in BILLING_COLUMNS if not c.nullable) + (
    "x_SkuKey",
    "ServiceName",
    "ProviderName",
)
CATALOG_FILLED = frozenset({"x_ModelId", "x_Unit", "x_Tokens", "x_CatalogStatus"})

#: FOCUS 1.3 renamed ProviderName; read either, write the 1.2 name.
FOCUS_13_RENAMES: Mapping[str, str] = {"ServiceProviderName": "ProviderName"}

# Statement lines: one row per (statement, period, model, region, unit, currency) as the partner
# reported it. The header fields (statement id, revision, issued date) repeat on every line so
# the table is self-describing.
STATEMENT_COLUMNS: tuple[Column, ...] = (
    _c("StatementId", _STR, False),
    _c("Revision", pa.int64(), False),
    _c("IssuedDate", pa.date32(), False),
    _c("x_PartnerId", _STR, False),
    _c("BillingPeriodStart", _TS, False),
    _c("x_ModelId", _STR, False, "Licensed model id from the published template."),
    _c("RegionId", _STR),
    _c("x_Unit", _STR, False),
    _c("x_Tokens", _QTY, False, "Reported quantity, normalized to single tokens."),
    _c("GrossRevenue", _MONEY, False),
    _c("ShareRate", pa.decimal128(18, 10), False),
    _c("ShareAmount", _MONEY, False),
    _c("Currency", _STR, False),
    _c("x_UnitPrice", _MONEY, True, "Price per quantity unit as reported (optional field)."),
    _c("x_Quantity", _QTY, False, "Quantity as reported, in the line's unit size."),
    _c(
        "x_StatementTotalShare",
        _MONEY,
        True,
        "The share total the statement states (optional header field), on every line.",
    ),
    _c("x_SnapshotId", _STR, False),
    _c("x_SourceFile", _STR, False),
    _c("x_SourceRow", pa.int64(), False),
)
_ARROW_TO_SQL[pa.decimal128(18, 10)] = RATE_SQL
STATEMENT_SCHEMA = pa.schema([pa.field(c.name, c.type, c.nullable) for c in STATEMENT_COLUMNS])

TOKEN_UNITS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "tokens",  # undifferentiated (Snowflake Cortex counts a call's tokens together)
)
CHARGE_CATEGORIES: tuple[str, ...] = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")


def select_sql(columns: tuple[Column, ...], exprs: Mapping[str, str]) -> str:
    """Build a SELECT list that yields exactly ``columns``, in order, with canonical types.

    ``exprs`` maps canonical names to SQL over the native relation; columns it leaves out
    become typed NULLs. Money and quantity casts go through DECIMAL, which DuckDB rounds
    half-away-from-zero at the 12th place; at that scale no cloud figure loses a digit.
    Unknown names are an error, so a typo cannot silently drop a column.
    """
    known = {c.name for c in columns}
    unknown = sorted(set(exprs) - known)
    if unknown:
        raise KeyError(f"not canonical columns: {', '.join(unknown)}")
    parts = [f'CAST({exprs.get(c.name, "NULL")} AS {c.sql_type}) AS "{c.name}"' for c in columns]
    return ",\n  ".join(parts)


def billing_select_sql(exprs: Mapping[str, str]) -> str:
    return select_sql(BILLING_COLUMNS, exprs)


def statement_select_sql(exprs: Mapping[str, str]) -> str:
    return select_sql(STATEMENT_COLUMNS, exprs)


def column_names(columns: tuple[Column, ...]) -> list[str]:
    return [c.name for c in columns]
