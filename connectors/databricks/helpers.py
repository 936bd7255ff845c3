"""SQL for Databricks' billing system tables unloaded as Parquet.

``system.billing.usage`` carries quantities (DBUs and other units) but no money;
``system.billing.list_prices`` is a history of prices per SKU. Cost is usage_quantity times the
price in force when the usage started (price_start_time <= usage_start_time < price_end_time,
end null = still in force), joined on sku_name, cloud and usage_unit, as Databricks documents.
Decimals stay decimals: usage_quantity is DECIMAL(38,18) and the product is rounded once, to
the canonical 12 places.
"""

from __future__ import annotations

from pathlib import Path

from revshare.schema import MONEY_SQL
from revshare.sqlutil import lit

USAGE_DIR = "usage"
PRICES_DIR = "list_prices"

USAGE_REQUIRED: tuple[str, ...] = (
    "record_id",
    "account_id",
    "workspace_id",
    "sku_name",
    "cloud",
    "usage_start_time",
    "usage_end_time",
    "usage_date",
    "usage_unit",
    "usage_quantity",
    "record_type",
)
PRICES_REQUIRED: tuple[str, ...] = (
    "price_start_time",
    "price_end_time",
    "sku_name",
    "cloud",
    "currency_code",
    "usage_unit",
    "pricing",
)
RECORD_TYPES = ("ORIGINAL", "RETRACTION", "RESTATEMENT")
#: Price precision the product can carry: DECIMAL(38,18) x DECIMAL(18,10) -> DECIMAL(38,28),
#: so one row's cost may reach 10^10 in its currency. A price with more places is refused.
PRICE_SQL = "DECIMAL(18,10)"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scan(path: Path) -> str:
    return f"read_parquet({lit(path)}, file_row_number = true, hive_partitioning = false)"


def scan_many(paths: list[Path]) -> str:
    items = ", ".join(lit(p) for p in paths)
    return f"read_parquet([{items}], union_by_name = true, hive_partitioning = false)"


def qty_expr(col: str, duck_type: str) -> str:
    """Exact decimal; a DOUBLE (an unload through pandas) goes through its round-trip text."""
    t = duck_type.upper()
    src = f"CAST({q(col)} AS VARCHAR)" if t in ("DOUBLE", "FLOAT") else q(col)
    return f"CAST({src} AS DECIMAL(38,18))"


def price_expr(pricing_type: str, which: str) -> str:
    """The unit price from the ``pricing`` struct; effective_list falls back to default."""
    default = "p.pricing.default"
    if which == "effective_list" and "effective_list" in pricing_type:
        return f"COALESCE(p.pricing.effective_list.default, {default})"
    return default


def has_field(struct_type: str, name: str) -> bool:
    return f"{name} " in struct_type or f'"{name}" ' in struct_type


def cost_expr(qty: str, price: str) -> str:
    return f"CAST({qty} * CAST({price} AS {PRICE_SQL}) AS {MONEY_SQL})"
