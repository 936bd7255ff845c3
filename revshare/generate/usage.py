"""One month of synthetic usage for every partner, before any cloud formats it.

Randomness is numpy's seeded generator, drawn as whole arrays; money is computed in DuckDB
as DECIMAL so that what the writers serialize and what the ground truth expects are the same
exact numbers. Loops here run over partners, models and regions (a few dozen), never lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa

from revshare.db import connect
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period

D = Decimal

# List prices, USD per 1M tokens (public third-party copies; see FORMATS.md).
PRICES: dict[str, dict[str, Decimal]] = {
    "llama-3.3-70b": {"input_tokens": D("0.72"), "output_tokens": D("0.72")},
    "llama-4-maverick": {"input_tokens": D("0.24"), "output_tokens": D("0.97"),
                         "cached_input_tokens": D("0.06")},
    "llama-4-scout": {"input_tokens": D("0.17"), "output_tokens": D("0.66")},
    "llama-3.1-8b": {"input_tokens": D("0.22"), "output_tokens": D("0.22")},
    "llama-3.1-405b": {"input_tokens": D("2.40"), "output_tokens": D("2.40")},
}  # fmt: skip
#: Snowflake Cortex: credits per 1M tokens (all tokens of a call), and currency per credit.
CORTEX_CREDITS: dict[str, Decimal] = {
    "llama-3.3-70b": D("0.36"), "llama-4-maverick": D("0.30"), "llama-4-scout": D("0.20"),
    "llama-3.1-8b": D("0.11"), "llama-3.1-405b": D("1.20"),
}  # fmt: skip
CREDIT_PRICE = D("2.00")
#: Local list prices: USD price x factor, to 4 places per 1M tokens.
PRICE_FACTOR = {"EUR": D("0.92"), "GBP": D("0.79")}
#: Accounts that only buy some models (so that grains mix one, two or three currencies).
ACCOUNT_MODELS = {"GBP": {"llama-4-maverick", "llama-3.1-8b"}}


@dataclass(frozen=True)
class PartnerSpec:
    models: dict[str, str]  # licensed model -> the partner's native name
    units: tuple[str, ...]
    regions: tuple[str, ...]
    accounts: tuple[tuple[str, str, str], ...]  # (id, name, currency)
    tokens_per_unit: int
    service: str


SPECS: dict[str, PartnerSpec] = {
    "aws": PartnerSpec(
        {"llama-3.3-70b": "Llama3-3-70B", "llama-4-maverick": "Llama4-Maverick-17B",
         "llama-4-scout": "Llama4-Scout-17B", "llama-3.1-8b": "Llama3-1-8B",
         "llama-3.1-405b": "Llama3-1-405B"},
        ("input_tokens", "output_tokens", "cached_input_tokens"),
        ("us-east-1", "us-west-2", "eu-central-1"),
        (("123456789012", "bedrock-payer", "USD"),), 1000, "AmazonBedrock"),
    "gcp": PartnerSpec(
        {"llama-3.3-70b": "Llama 3.3 70B", "llama-4-maverick": "Llama 4 Maverick",
         "llama-4-scout": "Llama 4 Scout", "llama-3.1-8b": "Llama 3.1 8B"},
        ("input_tokens", "output_tokens"),
        ("us-central1", "europe-west4", "asia-northeast1"),
        (("01A2B3-C4D5E6-F7A8B9", "Vertex MaaS billing", "USD"),), 1, "Vertex AI"),
    "azure": PartnerSpec(
        {"llama-3.3-70b": "Llama-3.3-70B-Instruct",
         "llama-4-maverick": "Llama-4-Maverick-17B-128E-Instruct-FP8",
         "llama-4-scout": "Llama-4-Scout-17B-16E-Instruct",
         "llama-3.1-8b": "Meta-Llama-3.1-8B-Instruct"},
        ("input_tokens", "output_tokens"),
        ("eastus", "westeurope", "swedencentral"),
        (("8a1b2c3d-0000-4000-8000-000000000001", "Foundry US", "USD"),
         ("8a1b2c3d-0000-4000-8000-000000000002", "Foundry EU", "EUR"),
         ("8a1b2c3d-0000-4000-8000-000000000003", "Foundry UK", "GBP")), 1000, "Foundry Models"),
    "snowflake": PartnerSpec(
        {"llama-3.3-70b": "llama3.3-70b", "llama-4-maverick": "llama4-maverick",
         "llama-4-scout": "llama4-scout", "llama-3.1-8b": "llama3.1-8b",
         "llama-3.1-405b": "llama3.1-405b"},
        ("tokens",), ("AWS_US_WEST_2", "AWS_EU_CENTRAL_1"),
        (("ORG1.ACME_PROD", "ACME_PROD", "USD"),), 1, "AI_SERVICES"),
}  # fmt: skip

_AWS_REGION = {"us-east-1": "USE1", "us-west-2": "USW2", "eu-central-1": "EUC1"}
_AWS_UNIT = {"input_tokens": "input-tokens", "output_tokens": "output-tokens",
             "cached_input_tokens": "cache-read-input-token-count"}  # fmt: skip
_WORD = {"input_tokens": "Input", "output_tokens": "Output"}

# Lines that are not the licensor's: same services, other publishers, and other services.
OTHER_SKUS: dict[str, tuple[tuple[str, str], ...]] = {
    "aws": (("AmazonBedrock", "USE1-TitanEmbeddingsV2-input-tokens"),
            ("AmazonEC2", "USE1-BoxUsage:m5.large"), ("AmazonS3", "USE1-TimedStorage-ByteHrs")),
    "gcp": (("Vertex AI", "Gemini 2.5 Flash Input tokens"),
            ("Compute Engine", "N2 Instance Core running in Americas")),
    "azure": (("Virtual Machines", "D2s v5"),
              ("Foundry Models", "Mistral-Large-2411 Input Tokens")),
    "snowflake": (("COMPUTE", "compute"), ("STORAGE", "storage")),
}  # fmt: skip


def sku_key(partner: str, native: str, unit: str, region: str, variant: str) -> str:
    """The partner-native string for one (model, unit, region, variant)."""
    if partner == "aws":
        mid = f"{native}-LatencyOptimized" if variant == "latency" else native
        return f"{_AWS_REGION[region]}-{mid}-{_AWS_UNIT[unit]}" + (
            "-batch" if variant == "batch" else ""
        )
    if partner == "gcp":
        if variant == "batch":
            return f"{native} Batch {_WORD[unit]} Token"
        prefix = "Cloud Vertex AI Model Garden Model as a Service " if variant == "long" else ""
        return f"{prefix}{native} {_WORD[unit]} tokens"
    if partner == "azure":
        return f"{native} {_WORD[unit]} Tokens"
    if variant == "snowflake" and native == "llama3.3-70b":
        return "snowflake-llama-3.3-70b"
    return native


_VARIANTS = {"aws": ("std", "batch", "latency"), "gcp": ("std", "long", "batch"),
             "azure": ("std",), "snowflake": ("std", "snowflake")}  # fmt: skip
_VARIANT_FACTOR = {"batch": D("0.5"), "latency": D("1.25")}


def price_per_unit(partner: str, model: str, unit: str, variant: str, currency: str) -> Decimal:
    spec = SPECS[partner]
    if partner == "snowflake":
        return CORTEX_CREDITS[model] * CREDIT_PRICE / D(1_000_000)
    per_m = PRICES[model][unit] * _VARIANT_FACTOR.get(variant, D(1))
    if currency in PRICE_FACTOR:
        per_m = (per_m * PRICE_FACTOR[currency]).quantize(D("0.0001"))
    return per_m * spec.tokens_per_unit / D(1_000_000)


def combos(partner: str, exclude: frozenset[tuple[str, str]] = frozenset()) -> pa.Table:
    """Every (model, unit, region, variant, account) a partner bills, with its SKU and price."""
    spec = SPECS[partner]
    rows = []
    for model, native in spec.models.items():
        for unit in spec.units:
            if unit not in PRICES[model] and partner != "snowflake":
                continue
            if (model, unit) in exclude:
                continue
            for region in spec.regions:
                for variant in _VARIANTS[partner]:
                    if variant == "snowflake" and model != "llama-3.3-70b":
                        continue
                    for acc_id, acc_name, ccy in spec.accounts:
                        if model not in ACCOUNT_MODELS.get(ccy, {model}):
                            continue
                        rows.append({
                            "model": model, "unit": unit, "region": region, "currency": ccy,
                            "account_id": acc_id, "account_name": acc_name,
                            "sku_key": sku_key(partner, native, unit, region, variant),
                            "unit_price": price_per_unit(partner, model, unit, variant, ccy),
                            "unit_credits": (CORTEX_CREDITS[model] / D(1_000_000)
                                             if partner == "snowflake" else None),
                        })  # fmt: skip
    return pa.Table.from_pylist(rows)


def draw_lines(
    partner: str,
    period: Period,
    n: int,
    rng: np.random.Generator,
    table: pa.Table,
    *,
    start_index: int = 0,
    day: int | None = None,
) -> pa.Table:
    """n licensed usage lines drawn from ``table`` (combos). Tokens are lognormal around 10M."""
    pick = rng.integers(0, table.num_rows, n)
    days = np.full(n, day) if day is not None else rng.integers(0, period.days, n)
    hours = rng.integers(0, 24, n)
    tokens = np.maximum(1000, rng.lognormal(16.0, 1.0, n).astype(np.int64))
    return table.take(pick).append_column("day", pa.array(days, pa.int32())).append_column(
        "hour", pa.array(hours, pa.int32())).append_column(
        "tokens", pa.array(tokens, pa.int64())).append_column(
        "seq", pa.array(np.arange(start_index, start_index + n), pa.int64()))  # fmt: skip


def to_gen_lines(
    partner: str,
    period: Period,
    drawn: pa.Table,
    *,
    kind: str = "usage",
    licensed: bool = True,
    service: str | None = None,
    day_offset: int = 0,
) -> pa.Table:
    """Money and native quantities for drawn lines, exactly, in DuckDB DECIMAL."""
    spec = SPECS[partner]
    con = connect()
    con.register("d", drawn)
    tpu = spec.tokens_per_unit
    is_snow = partner == "snowflake"
    # Multiply by exact decimal literals only: DuckDB turns DECIMAL division into DOUBLE.
    per_unit = format(D(1) / D(tpu), "f")
    qty = f"CAST(tokens AS DECIMAL(38,12)) * {per_unit}"
    credits = "round(CAST(tokens AS DECIMAL(38,12)) * unit_credits, 9)" if is_snow else "NULL"
    cost = f"{credits} * {CREDIT_PRICE}" if is_snow else f"round({qty} * unit_price, 10)"
    sign = "-1" if kind in ("credit", "refund") else "1"
    ts = f"TIMESTAMPTZ '{period.start.isoformat()}' + to_days(day + {day_offset}) + to_hours(hour)"
    sql = f"""
    SELECT
      '{partner}-' || '{kind}-' || seq AS line_id, '{partner}' AS partner,
      account_id, account_name, currency,
      {ts} AS usage_start, {ts} + INTERVAL 1 HOUR AS usage_end,
      '{period}' AS billing_period, region, '{kind}' AS kind, {licensed} AS licensed,
      {"service" if "service" in drawn.column_names else f"'{service or spec.service}'"}
        AS service, sku_key,
      NULL::VARCHAR AS sku_id,
      CAST({qty} AS DECIMAL(38,12)) AS quantity, CAST(unit_price AS DECIMAL(38,12)) AS unit_price,
      CAST({sign} * {cost} AS DECIMAL(38,12)) AS cost, CAST({credits} AS DECIMAL(38,12)) AS credits,
      CAST({CREDIT_PRICE if is_snow else "NULL"} AS DECIMAL(38,12)) AS credit_price,
      NULL::VARCHAR AS parent_line_id,
      model::VARCHAR AS _model, unit::VARCHAR AS _unit, tokens::BIGINT AS _tokens
    FROM d ORDER BY seq"""
    return con.sql(sql).to_arrow_table()


def finalize(table: pa.Table) -> pa.Table:
    """Drop the generator's private truth columns and cast to the writers' schema."""
    return table.select(GEN_LINES_SCHEMA.names).cast(GEN_LINES_SCHEMA)
