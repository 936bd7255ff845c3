"""The generator's intermediate table: what happened, before any cloud formats it.

The central generator (``revshare.generate``) decides usage, noise and planted discrepancies
and hands each cloud writer one Arrow table with this schema; the writer only lays it out on
disk exactly as that cloud delivers it. Quantities and money are exact decimals here; writers
turn them into the floats or strings each export really carries.
"""

from __future__ import annotations

import pyarrow as pa

DEC = pa.decimal128(38, 12)
TS = pa.timestamp("us", tz="UTC")

GEN_LINES_SCHEMA = pa.schema(
    [
        ("line_id", pa.string()),  # unique, stable across versions of the same line
        ("partner", pa.string()),  # aws | gcp | azure | snowflake
        ("account_id", pa.string()),  # billing account / payer / billing profile
        ("account_name", pa.string()),
        ("currency", pa.string()),  # billing currency of the account (ISO 4217)
        ("usage_start", TS),
        ("usage_end", TS),
        ("billing_period", pa.string()),  # YYYY-MM the line is invoiced in (late rows differ)
        ("region", pa.string()),  # partner-native region code
        ("kind", pa.string()),  # usage | tax | credit | refund
        ("licensed", pa.bool_()),  # the licensor's model usage (informational for writers)
        ("service", pa.string()),  # partner-native service / product code / meter category
        ("sku_key", pa.string()),  # usage type | SKU description | meter name | Cortex model
        ("sku_id", pa.string()),  # GCP SKU id, Azure meter id; null elsewhere
        ("quantity", DEC),  # native units (aws, azure: 1K tokens; gcp, snowflake: tokens)
        ("unit_price", DEC),  # per native unit, billing currency
        ("cost", DEC),  # billing currency; negative for credit and refund
        ("credits", DEC),  # snowflake only: credits consumed (cost = credits * credit_price)
        ("credit_price", DEC),  # snowflake only: currency per credit (the rate sheet)
        ("parent_line_id", pa.string()),  # credit/refund: the usage line it applies to
    ]
)
