"""Azure writer: lay generator lines out as a Cost Management export of MCA cost details.

What lands on disk is what a scheduled export writes to Blob Storage, under CONTAINER/ROOT
(``root`` here)::

    <export_name>/<YYYYMMDD-YYYYMMDD>/<EXPORTTIME yyyyMMddHHmm>/<GUID>/part_0_0001.csv.gz
                                                                    /manifest.json

Columns are the 65 fields of Microsoft's "Microsoft Customer Agreement cost and usage details
file schema", version 2023-12-01-preview (learn.microsoft.com, dataset-schema/
cost-usage-details-mca), in that order and spelling. Dates are written MM/DD/YYYY as Azure's CSV
exports do.

Format decisions (the core's reconciliation must know them):
- The licensed models are Marketplace rows (publisherType Marketplace, publisherName Meta);
  other lines are first-party (Microsoft). meterName = sku_key, meterId = sku_id.
- kind usage -> chargeType Usage; refund and credit -> chargeType Refund (MCA cost details have
  no credit line items; a credit against a marketplace charge reaches the customer as a refund).
- kind tax is NOT written: cost details are pre-tax by definition ("cost ... before credits or
  taxes"), so an Azure export never carries tax rows. They are dropped here, on purpose.
- Money is written as exact decimal text (CSV carries text, so the generator's decimals survive
  untouched); costInPricingCurrency/costInUsd and the USD prices are derived through a fixed
  USD->billing rate and are doubles, as Azure computes them.
- Every line the writer gets goes into this period's export; billingPeriodStartDate comes from
  each line's own billing_period, so late rows carry a different billing period.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from revshare.db import connect
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.sqlutil import lit

#: The MCA cost details header (dataset version 2023-12-01-preview), 65 columns, in order.
MCA_COLUMNS: tuple[str, ...] = (
    "invoiceId", "previousInvoiceId", "billingAccountId", "billingAccountName",
    "billingProfileId", "billingProfileName", "invoiceSectionId", "invoiceSectionName",
    "resellerName", "resellerMpnId", "costCenter", "billingPeriodEndDate",
    "billingPeriodStartDate", "servicePeriodEndDate", "servicePeriodStartDate", "date",
    "serviceFamily", "productOrderId", "productOrderName", "consumedService", "meterId",
    "meterName", "meterCategory", "meterSubCategory", "meterRegion", "ProductId", "ProductName",
    "SubscriptionId", "subscriptionName", "publisherType", "publisherId", "publisherName",
    "resourceGroupName", "ResourceId", "resourceLocation", "location", "effectivePrice",
    "quantity", "unitOfMeasure", "chargeType", "billingCurrency", "pricingCurrency",
    "costInBillingCurrency", "costInPricingCurrency", "costInUsd", "paygCostInBillingCurrency",
    "paygCostInUsd", "exchangeRatePricingToBilling", "exchangeRateDate", "isAzureCreditEligible",
    "serviceInfo1", "serviceInfo2", "additionalInfo", "tags", "PayGPrice", "frequency", "term",
    "reservationId", "reservationName", "pricingModel", "unitPrice", "costAllocationRuleName",
    "benefitId", "benefitName", "provider",
)  # fmt: skip
assert len(MCA_COLUMNS) == 65

#: Azure starts a new part file above this many rows.
ROWS_PER_PART = 500_000
MANIFEST_VERSION = "2024-04-01"
DATA_VERSION = "2023-12-01-preview"
API_VERSION = "2023-07-01-preview"
CONTAINER_URI = "https://revsharedemo.blob.core.windows.net/azure"
ROOT_FOLDER = "costexports"
#: MCA rates in USD and converts at a monthly rate. Fixed here so output is deterministic;
#: billing currencies not listed are priced in themselves (rate 1).
USD_TO_BILLING: dict[str, str] = {"USD": "1", "EUR": "0.92", "GBP": "0.79", "CAD": "1.36"}
#: Display names Azure writes in `location` / `meterRegion` for the region codes we use.
REGION_NAMES: dict[str, str] = {
    "eastus": "US East", "eastus2": "US East 2", "westus": "US West", "westus3": "US West 3",
    "centralus": "US Central", "northcentralus": "US North Central",
    "southcentralus": "US South Central", "swedencentral": "SE Central",
    "westeurope": "EU West", "northeurope": "EU North", "francecentral": "FR Central",
    "germanywestcentral": "DE West Central", "uksouth": "UK South", "japaneast": "JA East",
    "australiaeast": "AU East", "canadacentral": "CA Central",
}  # fmt: skip
_NS = uuid.UUID("7d1f9c0e-3a52-4c1e-9f4b-0a2e5b6c7d8e")
_KINDS = {"usage": "Usage", "refund": "Refund", "credit": "Refund"}
#: Columns that depend only on these keys are computed once per distinct key, not per row
#: (md5-derived ids and dates dominate the writer's time otherwise).
_KEYS = ("account_id", "billing_period", "parent_bp", "service", "region", "region_name",
         "sku_key", "sku_id", "licensed")  # fmt: skip
_KEYED = ("invoiceId", "previousInvoiceId", "billingAccountId", "invoiceSectionId",
          "billingPeriodEndDate", "billingPeriodStartDate", "servicePeriodEndDate",
          "servicePeriodStartDate", "productOrderId", "meterId", "ProductId", "ProductName",
          "SubscriptionId", "ResourceId", "exchangeRateDate")  # fmt: skip


def run_identity(period: Period, export_name: str, version: int) -> tuple[datetime, str, str]:
    """(submittedTime, run folder GUID, runId) of run ``version``: later versions run later.

    Run 1 is the daily month-to-date run on the 1st of the next month, 06:17 UTC; each newer
    version is one day later, re-emitting the whole month as Azure does.
    """
    submitted = period.end + timedelta(days=version - 1, hours=6, minutes=17, seconds=43)
    key = f"{export_name}|{period}|{version}"
    return submitted, str(uuid.uuid5(_NS, key + "|folder")), str(uuid.uuid5(_NS, key + "|run"))


def _num(expr: str) -> str:
    """Exact decimal text without trailing zeros ("0.72", not "0.720000000000")."""
    s = f"CAST({expr} AS VARCHAR)"
    return f"CASE WHEN contains({s}, '.') THEN rtrim(rtrim({s}, '0'), '.') ELSE {s} END"


def _guid(expr: str) -> str:
    """A stable GUID-shaped id from any text (Azure ids are GUIDs)."""
    return (
        f"regexp_replace(md5({expr}), '^(.{{8}})(.{{4}})(.{{4}})(.{{4}})(.{{12}})$', "
        r"'\1-\2-\3-\4-\5')"
    )


def _invoice(account: str, billing_period: str) -> str:
    """MCA invoice ids look like G012345678: one per billing profile and month."""
    h = f"('0x' || substr(md5({account} || '|' || {billing_period}), 1, 8))::BIGINT"
    return f"'G' || lpad(CAST({h} % 1000000000 AS VARCHAR), 9, '0')"


def _mdy(expr: str) -> str:
    return f"strftime({expr}, '%m/%d/%Y')"


def _row_exprs() -> dict[str, str]:
    bp_start = "strptime(l.billing_period || '-01', '%Y-%m-%d')"
    bp_end = f"last_day({bp_start})"
    mp = "l.licensed"  # the licensed models are Marketplace (Meta) rows
    usd_price = "CAST(l.unit_price AS DOUBLE) / CAST(l.rate AS DOUBLE)"
    usd_cost = "CAST(l.cost AS DOUBLE) / CAST(l.rate AS DOUBLE)"
    sub = _guid("'sub|' || l.account_id")
    po = "'po|' || l.account_id || '|' || l.service"
    ba, bp = "'ba|' || l.account_id", "'bp|' || l.account_id"
    meter = "'meter|' || l.sku_key"
    exprs = {
        "invoiceId": _invoice("l.account_id", "l.billing_period"),
        "previousInvoiceId": (
            "CASE WHEN l.parent_bp IS NOT NULL AND l.parent_bp <> l.billing_period "
            f"THEN {_invoice('l.account_id', 'l.parent_bp')} END"
        ),
        "billingAccountId": f"{_guid(ba)} || ':' || {_guid(bp)} || '_2019-05-31'",
        "billingAccountName": "l.account_name",
        "billingProfileId": "l.account_id",
        "billingProfileName": "l.account_name",
        "invoiceSectionId": "upper(substr(md5('is|' || l.account_id), 1, 4)) || '-' || "
        "upper(substr(md5('is|' || l.account_id), 5, 4)) || '-PJA-PGB'",
        "invoiceSectionName": "'AI Platform'",
        "billingPeriodEndDate": _mdy(bp_end),
        "billingPeriodStartDate": _mdy(bp_start),
        "servicePeriodEndDate": _mdy(bp_end),
        "servicePeriodStartDate": _mdy(bp_start),
        "date": _mdy("l.usage_start"),
        "serviceFamily": "'AI + Machine Learning'",
        "productOrderId": f"CASE WHEN {mp} THEN {_guid(po)} END",
        "productOrderName": f"CASE WHEN {mp} THEN l.service END",
        "consumedService": f"CASE WHEN {mp} THEN 'Microsoft.SaaS' "
        "ELSE 'Microsoft.CognitiveServices' END",
        "meterId": f"COALESCE(l.sku_id, {_guid(meter)})",
        "meterName": "l.sku_key",
        "meterCategory": "l.service",
        "meterSubCategory": f"CASE WHEN {mp} THEN 'Meta Models' ELSE l.service END",
        "meterRegion": "COALESCE(l.region_name, l.region)",
        "ProductId": "upper(substr(md5('prod|' || l.service || l.region), 1, 12))",
        "ProductName": "l.service || ' - ' || l.sku_key || ' - ' || "
        "COALESCE(l.region_name, l.region)",
        "SubscriptionId": sub,
        "subscriptionName": "'ai-foundry-prod'",
        "publisherType": f"CASE WHEN {mp} THEN 'Marketplace' ELSE 'Microsoft' END",
        "publisherName": f"CASE WHEN {mp} THEN 'Meta' ELSE 'Microsoft' END",
        "resourceGroupName": "'rg-ai-foundry'",
        "ResourceId": f"'/subscriptions/' || {sub} || '/resourceGroups/rg-ai-foundry/providers/"
        "Microsoft.CognitiveServices/accounts/foundry-' || l.region",
        "resourceLocation": "l.region",
        "location": "COALESCE(l.region_name, l.region)",
        "effectivePrice": f"CAST({usd_price} AS VARCHAR)",
        "quantity": _num("l.quantity"),
        # token meters count 1K tokens; VM noise lines are hours
        "unitOfMeasure": "CASE WHEN l.service = 'Virtual Machines' THEN '1 Hour' ELSE '1K' END",
        "chargeType": "l.charge_type",
        "billingCurrency": "l.currency",
        "pricingCurrency": "l.pricing_currency",
        "costInBillingCurrency": _num("l.cost"),
        "costInPricingCurrency": f"CASE WHEN l.rate = 1 THEN {_num('l.cost')} "
        f"ELSE CAST({usd_cost} AS VARCHAR) END",
        "costInUsd": f"CASE WHEN l.pricing_currency = 'USD' AND l.rate = 1 THEN {_num('l.cost')} "
        f"WHEN l.pricing_currency = 'USD' THEN CAST({usd_cost} AS VARCHAR) END",
        "paygCostInBillingCurrency": _num("l.cost"),
        "paygCostInUsd": f"CASE WHEN l.pricing_currency = 'USD' THEN CAST({usd_cost} AS VARCHAR) "
        "END",
        "exchangeRatePricingToBilling": _num("l.rate"),
        "exchangeRateDate": _mdy(bp_start),
        "isAzureCreditEligible": f"CASE WHEN {mp} THEN 'False' ELSE 'True' END",
        "PayGPrice": f"CAST({usd_price} AS VARCHAR)",
        "frequency": "'UsageBased'",
        "pricingModel": "'OnDemand'",
        "unitPrice": f"CAST({usd_price} AS VARCHAR)",
        "provider": "'Azure'",
    }
    return exprs


def _check(lines: pa.Table) -> None:
    if not lines.schema.equals(GEN_LINES_SCHEMA):
        raise ValueError("lines must have GEN_LINES_SCHEMA")
    partners = set(pc.unique(lines["partner"]).to_pylist())
    if partners - {"azure"}:
        raise ValueError(f"azure writer got lines of other partners: {sorted(partners)}")
    kinds = set(pc.unique(lines["kind"]).to_pylist()) - set(_KINDS) - {"tax"}
    if kinds:
        raise ValueError(f"unknown line kinds: {sorted(kinds)}")


def write(
    lines: pa.Table, period: Period, root: Path, *, export_name: str, version: int = 1
) -> list[Path]:
    """Write one export run for ``period``; returns the data files and the manifest."""
    sink = Sink(period, root, export_name=export_name, version=version)
    sink.add(lines)
    return sink.close()


class Sink:
    """One export run written in chunks: each ``add`` appends part files, ``close`` writes the
    manifest over all of them, so a month too large to hold at once goes slice by slice. A
    refund must come in the same chunk as the line it refunds (``previousInvoiceId``)."""

    def __init__(self, period: Period, root: Path, *, export_name: str, version: int = 1) -> None:
        if version < 1:
            raise ValueError("version starts at 1")
        self.period, self.export_name, self.version = period, export_name, version
        self.submitted, folder_guid, self.run_id = run_identity(period, export_name, version)
        self.last_day = period.end - timedelta(days=1)
        date_range = f"{period.start:%Y%m%d}-{self.last_day:%Y%m%d}"
        self.rel_dir = f"{export_name}/{date_range}/{self.submitted:%Y%m%d%H%M}/{folder_guid}"
        self.run_dir = root / self.rel_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.blobs: list[dict] = []
        self.paths: list[Path] = []
        self.n_rows = 0

    def add(self, lines: pa.Table, *, temp_dir: Path | None = None) -> None:
        """Append ``lines`` as further parts; DuckDB spills to ``temp_dir`` past 1 GB."""
        _check(lines)
        if lines.num_rows == 0 and self.paths:
            return
        con = connect(memory_limit="1GB", temp_dir=temp_dir)  # dates are UTC days
        try:
            self._add(con, lines)
        finally:
            con.close()

    def _add(self, con: duckdb.DuckDBPyConnection, lines: pa.Table) -> None:
        ordered = lines.append_column("_ord", pa.array(np.arange(lines.num_rows, dtype=np.int64)))
        con.register("lines", ordered)
        rates = pa.table(
            {
                "currency": list(USD_TO_BILLING),
                "rate": pa.array(
                    [Decimal(v) for v in USD_TO_BILLING.values()], pa.decimal128(18, 10)
                ),
            }
        )
        con.register("usd_rates", rates)
        regions = pa.table({"code": list(REGION_NAMES), "name": list(REGION_NAMES.values())})
        con.register("region_names", regions)
        kinds = pa.table({"kind": list(_KINDS), "charge_type": list(_KINDS.values())})
        con.register("kinds", kinds)
        exprs = _row_exprs()
        keyed = ",\n  ".join(f'{exprs[c]} AS "{c}"' for c in _KEYED)
        select = ",\n  ".join(
            f'i."{c}"' if c in _KEYED else f'{exprs.get(c, "NULL")} AS "{c}"' for c in MCA_COLUMNS
        )
        keys = ", ".join(_KEYS)
        on = " AND ".join(f"i.{k} IS NOT DISTINCT FROM l.{k}" for k in _KEYS)
        con.execute(
            f"""
            CREATE TEMP TABLE staged AS
            WITH base AS (
              SELECT l.*, k.charge_type, p.billing_period AS parent_bp, g.name AS region_name,
                     -- MCA prices in USD; other billing currencies convert at a monthly rate
                     CASE WHEN u.currency IS NULL THEN l.currency ELSE 'USD' END
                       AS pricing_currency,
                     COALESCE(u.rate, 1) AS rate
              FROM lines l
              JOIN kinds k ON k.kind = l.kind          -- tax has no kind here: dropped
              LEFT JOIN lines p ON p.line_id = l.parent_line_id
              LEFT JOIN region_names g ON g.code = l.region
              LEFT JOIN usd_rates u ON u.currency = l.currency
            ), ids AS (
              SELECT {keys}, {keyed} FROM (SELECT DISTINCT {keys} FROM base) l
            )
            SELECT row_number() OVER (ORDER BY l._ord) AS _rn,
              {select}
            FROM base l JOIN ids i ON {on}
            """
        )
        (n_rows,) = con.execute("SELECT count(*) FROM staged").fetchone()
        n_parts = max(1, math.ceil(n_rows / ROWS_PER_PART))
        cols = ", ".join(f'"{c}"' for c in MCA_COLUMNS)
        for part in range(n_parts):  # a handful of files, never rows
            name = f"part_0_{len(self.paths) + 1:04d}.csv.gz"
            path = self.run_dir / name
            lo, hi = part * ROWS_PER_PART, (part + 1) * ROWS_PER_PART
            con.execute(
                f"COPY (SELECT {cols} FROM staged WHERE _rn > {lo} AND _rn <= {hi} "
                f"ORDER BY _rn) TO {lit(path)} (FORMAT csv, HEADER, COMPRESSION gzip)"
            )
            rows = min(hi, n_rows) - lo if n_rows else 0
            self.blobs.append(
                {
                    "blobName": f"{ROOT_FOLDER}/{self.rel_dir}/{name}",
                    "byteCount": path.stat().st_size,
                    "dataRowCount": rows,
                }
            )
            self.paths.append(path)
        self.n_rows += n_rows

    def close(self) -> list[Path]:
        """Write the manifest over every part; return the data files and the manifest."""
        period, export_name, version = self.period, self.export_name, self.version
        submitted, run_id, last_day = self.submitted, self.run_id, self.last_day
        blobs, n_rows = self.blobs, self.n_rows
        manifest = {
            "manifestVersion": MANIFEST_VERSION,
            "byteCount": sum(b["byteCount"] for b in blobs),
            "blobCount": len(blobs),
            "dataRowCount": n_rows,
            "exportConfig": {
                "exportName": export_name,
                "resourceId": "/providers/Microsoft.Billing/billingAccounts/"
                f"{uuid.uuid5(_NS, 'account')}/providers/Microsoft.CostManagement/exports/"
                f"{export_name}",
                "dataVersion": DATA_VERSION,
                "apiVersion": API_VERSION,
                "type": "ActualCost",
                "timeFrame": "MonthToDate",
                "granularity": "Daily",
            },
            "deliveryConfig": {
                "partitionData": True,
                "dataOverwriteBehavior": "CreateNewReport",
                "fileFormat": "Csv",
                "compressionMode": "gzip",
                "containerUri": CONTAINER_URI,
                "rootFolderPath": ROOT_FOLDER,
            },
            "runInfo": {
                "executionType": "Scheduled",
                # .NET writes seven fractional digits; keep that shape so readers must cope.
                "submittedTime": f"{submitted:%Y-%m-%dT%H:%M:%S}.{version:07d}Z",
                "runId": run_id,
                "startDate": f"{period.start:%Y-%m-%dT%H:%M:%S}",
                "endDate": f"{last_day:%Y-%m-%dT%H:%M:%S}",
            },
            "blobs": blobs,
        }
        manifest_path = self.run_dir / "manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return [*self.paths, manifest_path]
