"""The pandas way: the same reconciliation as a team without this product would script it.

Each native format is read with pandas (``read_parquet``, ``read_json(lines=True)`` per file,
``read_csv``), SKUs are mapped to models with the catalog's regex rules (``str.contains`` per
rule over the whole column), usage is summed to (model, unit), converted at the contract's
month-end FX rate, priced at the contract's rate (flat, per model, or the tiered blended rate
on the month's in-scope revenue), joined to the latest statement revision, and the expected
share and the differences computed. Floats throughout, as such a script would; the figures
agree with the pipeline's to the cent (checked by the bench and ``tests/unit/test_bench.py``).
Not modelled: unmapped-SKU rows, the minimum guarantee, restatements, discrepancy types.

Run as ``python -m revshare.bench.pandas_way --data DIR --period YYYY-MM --out FILE.json``.
"""

from __future__ import annotations

import json
import warnings
from decimal import Decimal
from pathlib import Path

import pandas as pd

from revshare import terms
from revshare.bench.limit import AWS_USAGE
from revshare.bench.natives import Native, locate, reference_main, statement_files
from revshare.config import Config
from revshare.periods import Period


def read_usage(n: Native, period: Period) -> pd.DataFrame:
    """One source's usage lines as (sku, currency, quantity, cost)."""
    start = pd.Timestamp(period.start)
    end = pd.Timestamp(period.end)
    if n.format == "aws":
        cols = ["line_item_usage_type", "line_item_currency_code", "line_item_usage_amount",
                "line_item_unblended_cost", "line_item_line_item_type",
                "bill_billing_period_start_date"]  # fmt: skip
        df = pd.concat([pd.read_parquet(f, columns=cols) for f in n.files], ignore_index=True)
        df = df[df.line_item_line_item_type.isin(AWS_USAGE)]
        df = df[df.bill_billing_period_start_date == start]
        return pd.DataFrame({
            "sku": df.line_item_usage_type, "currency": df.line_item_currency_code,
            "quantity": df.line_item_usage_amount, "cost": df.line_item_unblended_cost,
        })  # fmt: skip
    if n.format == "gcp":
        parts = []
        for f in n.files:  # in chunks: a whole 500,000-row shard of nested records is ~8 GB
            for df in pd.read_json(f, lines=True, compression="gzip", dtype=False,
                                   chunksize=100_000):  # fmt: skip
                month = df.invoice.str.get("month")
                df = df[(df.cost_type == "regular") & (month == period.compact)]
                parts.append(pd.DataFrame({
                    "sku": df.sku.str.get("description"), "currency": df.currency,
                    "quantity": df.usage.str.get("amount").astype(float), "cost": df.cost,
                }))  # fmt: skip
        return pd.concat(parts, ignore_index=True)
    if n.format == "azure":
        cols = ["meterName", "billingCurrency", "quantity", "costInBillingCurrency",
                "chargeType", "billingPeriodStartDate"]  # fmt: skip
        df = pd.concat([pd.read_csv(f, usecols=cols) for f in n.files], ignore_index=True)
        bp = pd.to_datetime(df.billingPeriodStartDate, format="%m/%d/%Y", utc=True)
        df = df[(df.chargeType.str.lower() == "usage") & (bp >= start) & (bp < end)]
        return pd.DataFrame({
            "sku": df.meterName, "currency": df.billingCurrency, "quantity": df.quantity,
            "cost": df.costInBillingCurrency,
        })  # fmt: skip
    calls = pd.concat([pd.read_parquet(f) for f in n.files], ignore_index=True)
    calls = calls[calls.START_TIME.between(start, end, inclusive="left")]
    calls["DATE"] = calls.START_TIME.dt.date
    rates = pd.concat([pd.read_parquet(f) for f in n.rates], ignore_index=True)
    rates = rates[rates.USAGE_TYPE == "ai_services"]
    rates["DATE"] = pd.to_datetime(rates.DATE).dt.date
    df = calls.merge(rates, on=["ACCOUNT_LOCATOR", "REGION", "DATE"], how="left")
    return pd.DataFrame({
        "sku": df.MODEL_NAME, "currency": df.CURRENCY, "quantity": df.TOKENS.astype(float),
        "cost": df.TOKEN_CREDITS.astype(float) * df.EFFECTIVE_RATE.astype(float),
    })  # fmt: skip


def map_skus(df: pd.DataFrame, config: Config, partner: str) -> pd.DataFrame:
    """Model, unit and tokens per line from the catalog's rules (first match wins)."""
    cat = config.catalog.partners[partner]
    warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")
    sku = df.sku.fillna("")
    df = df.assign(in_scope=sku.str.contains(cat.scope, regex=True), model=None, unit=None)
    df["tpu"] = float(cat.tokens_per_unit)
    for r in cat.models:
        hit = df.model.isna() & sku.str.contains(r.match, regex=True)
        df.loc[hit, "model"] = r.model
    for r in cat.units:
        hit = df.unit.isna() & sku.str.contains(r.match, regex=True)
        df.loc[hit, "unit"] = r.unit
        df.loc[hit, "tpu"] = float(r.tokens_per_unit or cat.tokens_per_unit)
    df["tokens"] = df.quantity * df.tpu
    return df


def _fx(config: Config, period: Period, ccy: str, to: str) -> float:
    return float(config.fx.rate(period, ccy, to))


def read_statements(files: list[Path]) -> pd.DataFrame:
    """Statement lines of the latest revision, CSV or JSON as the generator writes them."""
    frames = []
    for f in files:
        if f.suffix == ".json":
            doc = json.loads(f.read_text())
            df = pd.DataFrame(doc["lines"])
            for k in ("statement_id", "revision", "currency"):
                if k not in df or df[k].isna().all():
                    df[k] = doc.get(k)
        else:
            df = pd.read_csv(f, dtype={"quantity": str, "share_amount": str})
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df = df[df.revision == df.groupby("statement_id").revision.transform("max")]
    size = df.unit_size.fillna(1).astype(float) if "unit_size" in df else 1.0
    return df.assign(tokens=df.quantity.astype(float) * size, share=df.share_amount.astype(float))


def reconcile(config: Config, period: Period, data_dir: Path) -> dict:
    """The grain figures per partner: billed tokens and revenue, expected and reported share."""
    stmts = statement_files(config, period, data_dir)
    rows: list[dict] = []
    for n in locate(config, period, data_dir):
        c = config.contract_for(n.partner, period)
        if c.fx_policy != "month_end" or list(c.charge_categories) != ["Usage"]:
            raise NotImplementedError(f"{n.partner}: the pandas reference does month-end Usage")
        df = map_skus(read_usage(n, period), config, n.partner)
        fx = {x: _fx(config, period, x, c.currency) for x in df.currency.unique()}
        df["revenue"] = df.cost * df.currency.map(fx)
        in_scope = float(df.loc[df.in_scope, "revenue"].sum())
        mapped = df[df.in_scope & df.model.notna() & df.unit.notna()]
        billed = mapped.groupby(["model", "unit"], as_index=False)[["tokens", "revenue"]].sum()
        rate = {
            m: float(terms.model_rate(c, m, Decimal(repr(in_scope)))) for m in billed.model.unique()
        }
        billed["expected_share"] = billed.revenue * billed.model.map(rate)
        st = read_statements(stmts[n.partner])
        st_fx = {x: _fx(config, period, x, c.currency) for x in st.currency.unique()}
        st["share"] = st.share * st.currency.map(st_fx)
        reported = st.groupby(["model_id", "unit"], as_index=False)[["tokens", "share"]].sum()
        reported = reported.rename(columns={"model_id": "model"})
        g = billed.merge(reported, on=["model", "unit"], how="outer", suffixes=("", "_rep"))
        g["expected_share"] = g.expected_share.fillna(0.0)
        g["amount"] = g.share.fillna(0.0) - g.expected_share
        for r in g.itertuples():  # one row per (model, unit): a few dozen, not billing lines
            rows.append({
                "partner": n.partner, "model_id": r.model, "unit": r.unit,
                "billed_tokens": _num(r.tokens), "billed_revenue": _num(r.revenue),
                "expected_share": _num(r.expected_share),
                "reported_tokens": _num(r.tokens_rep), "reported_share": _num(r.share),
                "amount": _num(r.amount),
            })  # fmt: skip
    return {"grain": rows}


def _num(x: float) -> float | None:
    return None if pd.isna(x) else float(x)


def main(argv: list[str] | None = None) -> None:
    reference_main(__doc__, reconcile, argv)


if __name__ == "__main__":
    main()
