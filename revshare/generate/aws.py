"""Lay generator lines out as AWS Data Exports delivers CUR 2.0 (Parquet, create-new mode).

On disk, under ``root`` (which stands for ``s3://BUCKET/PREFIX/``)::

    EXPORT/data/BILLING_PERIOD=YYYY-MM/EXECUTION_ID/EXPORT-00001.snappy.parquet
    EXPORT/metadata/BILLING_PERIOD=YYYY-MM/EXPORT-Manifest.json

Every refresh of a period is a new execution folder; the manifest is rewritten to point at the
newest one and older folders stay, which is how a restatement looks to a reader. Costs and
amounts are doubles and rates strings, as AWS writes them: the decimals go through their
shortest text form so a cost with up to 15 significant digits reads back exactly. Nothing in the
files depends on the clock, so the same input gives byte-identical output.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from revshare.db import connect
from revshare.periods import Period

#: AWS splits a partition into parts; we cut at this many rows per file.
ROWS_PER_FILE = 500_000
#: Fixed namespace so execution ids and export ARNs are stable across runs.
_NS = uuid.UUID("6f1d3c1e-2b7a-5a4e-9c55-0d0a7c3f2b11")

_TS = pa.timestamp("ms", tz="UTC")
_SMAP = pa.map_(pa.string(), pa.string())
_DMAP = pa.map_(pa.string(), pa.float64())

# The 116 columns of the CUR 2.0 table, in the table dictionary's order.
_COLUMN_TEXT = """
bill_bill_type bill_billing_entity bill_billing_period_end_date bill_billing_period_start_date
bill_invoice_id bill_invoicing_entity bill_payer_account_id bill_payer_account_name cost_category
discount discount_bundled_discount discount_total_discount identity_line_item_id
identity_time_interval line_item_availability_zone line_item_blended_cost line_item_blended_rate
line_item_currency_code line_item_iam_principal line_item_legal_entity
line_item_line_item_description line_item_line_item_type line_item_net_unblended_cost
line_item_net_unblended_rate line_item_normalization_factor line_item_normalized_usage_amount
line_item_operation line_item_product_code line_item_resource_id line_item_tax_type
line_item_unblended_cost line_item_unblended_rate line_item_usage_account_id
line_item_usage_account_name line_item_usage_amount line_item_usage_end_date
line_item_usage_start_date line_item_usage_type pricing_currency pricing_lease_contract_length
pricing_offering_class pricing_public_on_demand_cost pricing_public_on_demand_rate
pricing_purchase_option pricing_rate_code pricing_rate_id pricing_term pricing_unit product
product_comment product_fee_code product_fee_description product_from_location
product_from_location_type product_from_region_code product_instance_family
product_instance_type product_instancesku product_location product_location_type
product_operation product_pricing_unit product_product_family product_region_code
product_servicecode product_sku product_to_location product_to_location_type
product_to_region_code product_usagetype reservation_amortized_upfront_cost_for_usage
reservation_amortized_upfront_fee_for_billing_period reservation_availability_zone
reservation_effective_cost reservation_end_time reservation_modification_status
reservation_net_amortized_upfront_cost_for_usage
reservation_net_amortized_upfront_fee_for_billing_period reservation_net_effective_cost
reservation_net_recurring_fee_for_usage
reservation_net_unused_amortized_upfront_fee_for_billing_period
reservation_net_unused_recurring_fee reservation_net_upfront_value
reservation_normalized_units_per_reservation reservation_number_of_reservations
reservation_recurring_fee_for_usage reservation_reservation_a_r_n reservation_start_time
reservation_subscription_id reservation_total_reserved_normalized_units
reservation_total_reserved_units reservation_units_per_reservation
reservation_unused_amortized_upfront_fee_for_billing_period
reservation_unused_normalized_unit_quantity reservation_unused_quantity
reservation_unused_recurring_fee reservation_upfront_value resource_tags
savings_plan_amortized_upfront_commitment_for_billing_period savings_plan_end_time
savings_plan_instance_type_family savings_plan_net_amortized_upfront_commitment_for_billing_period
savings_plan_net_recurring_commitment_for_billing_period
savings_plan_net_savings_plan_effective_cost savings_plan_offering_type
savings_plan_payment_option savings_plan_purchase_term
savings_plan_recurring_commitment_for_billing_period
savings_plan_region savings_plan_savings_plan_a_r_n savings_plan_savings_plan_effective_cost
savings_plan_savings_plan_rate savings_plan_start_time savings_plan_total_commitment_to_date
savings_plan_used_commitment tags
"""
CUR2_COLUMNS: tuple[str, ...] = tuple(_COLUMN_TEXT.split())

# Types per the CUR 2.0 table dictionary: money and amounts double, *_rate and the RI/SP
# start/end times and unit counts strings, billing and usage dates timestamps, four maps.
_DOUBLE = frozenset(
    {
        "discount_bundled_discount",
        "discount_total_discount",
        "line_item_blended_cost",
        "line_item_net_unblended_cost",
        "line_item_normalization_factor",
        "line_item_normalized_usage_amount",
        "line_item_unblended_cost",
        "line_item_usage_amount",
        "pricing_public_on_demand_cost",
        "savings_plan_savings_plan_rate",
        "savings_plan_total_commitment_to_date",
        "savings_plan_used_commitment",
        "reservation_unused_normalized_unit_quantity",
        "reservation_unused_quantity",
    }
    | {
        c
        for c in CUR2_COLUMNS
        if c.startswith(("reservation_", "savings_plan_"))
        and ("cost" in c or "fee" in c or "commitment_for" in c or "value" in c)
    }
)
_TIMESTAMP = frozenset(
    {
        "bill_billing_period_end_date",
        "bill_billing_period_start_date",
        "line_item_usage_end_date",
        "line_item_usage_start_date",
    }
)
_MAPS = {
    "cost_category": _SMAP,
    "product": _SMAP,
    "resource_tags": _SMAP,
    "tags": _SMAP,
    "discount": _DMAP,
}


def _type(name: str) -> pa.DataType:
    if name in _MAPS:
        return _MAPS[name]
    if name in _TIMESTAMP:
        return _TS
    return pa.float64() if name in _DOUBLE else pa.string()


CUR2_SCHEMA = pa.schema([pa.field(c, _type(c)) for c in CUR2_COLUMNS])
#: Type names as the manifest's ``columns`` list writes them.
_MANIFEST_TYPE = {
    pa.float64(): "double",
    pa.string(): "string",
    _TS: "timestamp",
    _SMAP: "map<string,string>",
    _DMAP: "map<string,double>",
}

_PRODUCT_NAMES = {"AmazonBedrock": "Amazon Bedrock", "AmazonSageMaker": "Amazon SageMaker"}
_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
}
_LINE_TYPES = {"usage": "Usage", "tax": "Tax", "credit": "Credit", "refund": "Refund"}


def _case(column: str, mapping: dict[str, str], default: str) -> str:
    whens = " ".join(f"WHEN {_q(k)} THEN {_q(v)}" for k, v in mapping.items())
    return f"CASE {column} {whens} ELSE {default} END"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Values used by several columns, computed once per row in an inner SELECT (DuckDB does not
# share common subexpressions across output columns, and these casts dominate the run time).
_SHARED = {
    # Through text: decimal->text is exact and text->double correctly rounded, so the double
    # is the nearest one to the decimal and its shortest repr gives the decimal back.
    "_cost": "CAST(CAST(cost AS VARCHAR) AS DOUBLE)",
    "_qty": "CAST(CAST(quantity AS VARCHAR) AS DOUBLE)",
    # A rate as AWS writes it: no trailing zeros ('0.00072', not '0.000720000000').
    "_rate": "rtrim(rtrim(CAST(unit_price AS VARCHAR), '0'), '.')",
    # Plain timestamp arithmetic, then read as UTC: no time-zone library in the hot path.
    "_bp": "strptime(billing_period, '%Y-%m')",
    "_product_name": _case("service", _PRODUCT_NAMES, "service"),
    "_usage": "kind = 'usage'",
}


def _select_sql() -> str:
    """Generator columns -> the CUR 2.0 columns we fill (``_cur2_table`` adds the null ones)."""
    iso = "'%Y-%m-%dT%H:%M:%SZ'"
    exprs = {
        "bill_bill_type": "'Anniversary'",
        "bill_billing_entity": "'AWS'",
        "bill_billing_period_end_date": "make_timestamptz(epoch_us(_bp + INTERVAL 1 MONTH))",
        "bill_billing_period_start_date": "make_timestamptz(epoch_us(_bp))",
        "bill_invoice_id": "''",  # blank until AWS finalizes the period
        "bill_invoicing_entity": "'Amazon Web Services, Inc.'",
        "bill_payer_account_id": "account_id",
        "bill_payer_account_name": "account_name",
        "cost_category": "MAP {}::MAP(VARCHAR, VARCHAR)",
        "discount": "MAP {}::MAP(VARCHAR, DOUBLE)",
        "identity_line_item_id": "line_id",
        "identity_time_interval": (
            f"strftime(usage_start, {iso}) || '/' || strftime(usage_end, {iso})"
        ),
        "line_item_blended_cost": "_cost",
        "line_item_blended_rate": "_rate",
        "line_item_currency_code": "currency",
        "line_item_legal_entity": "'Amazon Web Services, Inc.'",
        "line_item_line_item_description": (
            "CASE WHEN kind = 'tax' THEN 'Tax for product code ' || service "
            "WHEN _usage THEN '$' || _rate || ' per 1K tokens for ' || sku_key "
            "ELSE upper(kind[1]) || kind[2:] || ' applied to ' || sku_key END"
        ),
        "line_item_line_item_type": _case("kind", _LINE_TYPES, "NULL"),
        "line_item_operation": "CASE WHEN _usage THEN 'InvokeModelInference' END",
        "line_item_product_code": "service",
        "line_item_tax_type": "CASE WHEN kind = 'tax' THEN 'Sales Tax' END",
        "line_item_unblended_cost": "_cost",
        "line_item_unblended_rate": "_rate",
        "line_item_usage_account_id": "account_id",
        "line_item_usage_account_name": "account_name",
        "line_item_usage_amount": "_qty",
        "line_item_usage_end_date": "usage_end",
        "line_item_usage_start_date": "usage_start",
        "line_item_usage_type": "sku_key",
        "pricing_currency": "currency",
        "pricing_public_on_demand_cost": "CASE WHEN _usage THEN _cost ELSE 0 END",
        "pricing_public_on_demand_rate": "CASE WHEN _usage THEN _rate END",
        "pricing_term": "CASE WHEN _usage THEN 'OnDemand' END",
        "pricing_unit": "CASE WHEN _usage THEN '1K tokens' END",
        "product": (
            "MAP {'product_name': _product_name, 'servicename': _product_name, 'region': region}"
        ),
        "product_location": _case("region", _LOCATIONS, "region"),
        "product_location_type": "CASE WHEN region IS NOT NULL THEN 'AWS Region' END",
        "product_operation": "CASE WHEN _usage THEN 'InvokeModelInference' END",
        "product_pricing_unit": "CASE WHEN _usage THEN '1K tokens' END",
        "product_region_code": "region",
        "product_servicecode": "service",
        "product_sku": "sku_id",
        "product_usagetype": "sku_key",
        "resource_tags": "MAP {}::MAP(VARCHAR, VARCHAR)",
        "tags": "MAP {}::MAP(VARCHAR, VARCHAR)",
    }
    cols = ",\n  ".join(f"{exprs[c]} AS {c}" for c in CUR2_COLUMNS if c in exprs)
    shared = ", ".join(f"{e} AS {n}" for n, e in _SHARED.items())
    return f"SELECT\n  {cols}\nFROM (SELECT *, {shared} FROM lines)"


def execution_id(export_name: str, period: Period, version: int) -> str:
    """Stable stand-in for AWS's execution UUID: same export, period and version, same id."""
    return str(uuid.uuid5(_NS, f"{export_name}/{period}/v{version}"))


def write(
    lines: pa.Table,
    period: Period,
    root: Path,
    *,
    export_name: str,
    version: int = 1,
    bucket: str = "revshare-billing",
    prefix: str = "cur2",
) -> list[Path]:
    """Write one CUR 2.0 delivery (execution ``version``) of ``period``; return the files written.

    ``lines`` are generator rows (GEN_LINES_SCHEMA) for AWS, normally all of ``period``. Every
    row goes into this period's partition with its own ``billing_period`` in the bill columns,
    as the other writers do; a stray row of another period is the reader's to filter out.
    Data files are written before the manifest, as AWS does, so a reader never sees a manifest
    pointing at files that are not there yet.
    """
    sink = Sink(period, root, export_name=export_name, version=version, bucket=bucket,
                prefix=prefix)  # fmt: skip
    sink.add(lines)
    return sink.close()


class Sink:
    """One delivery written in chunks: each ``add`` appends parts, ``close`` writes the
    manifest over all of them. A month too large to hold at once goes through here slice by
    slice (``revshare.generate.slices``); ``write`` is one ``add``."""

    def __init__(
        self,
        period: Period,
        root: Path,
        *,
        export_name: str,
        version: int = 1,
        bucket: str = "revshare-billing",
        prefix: str = "cur2",
    ) -> None:
        if version < 1:
            raise ValueError(f"version counts deliveries from 1, got {version}")
        self.period, self.root, self.export_name = period, root, export_name
        self.bucket, self.prefix = bucket, prefix
        self.exec_id = execution_id(export_name, period, version)
        self.partition = f"BILLING_PERIOD={period}"
        self.data_dir = root / export_name / "data" / self.partition / self.exec_id
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.data_dir.glob(f"{export_name}-*.snappy.parquet"):
            stale.unlink()  # rewriting a version: no leftover parts from a larger earlier run
        self.written: list[Path] = []
        self.payers: set[str] = set()

    def add(self, lines: pa.Table, *, temp_dir: Path | None = None) -> None:
        """Append ``lines`` as further parts (an empty chunk adds nothing after the first)."""
        if lines.num_rows == 0 and self.written:
            return
        con = connect(memory_limit="1GB", temp_dir=temp_dir)  # UTC: strftime, timestamp casts
        try:
            con.register("lines", lines)
            filled = con.sql(_select_sql()).to_arrow_table()
        finally:
            con.close()
        # Columns Bedrock lines never fill (reservations, savings plans...) are typed nulls,
        # made in Arrow: cheaper than dozens of NULL expressions in the query.
        table = pa.table(
            [
                filled.column(f.name).cast(f.type)
                if f.name in filled.column_names
                else pa.nulls(filled.num_rows, f.type)
                for f in CUR2_SCHEMA
            ],
            schema=CUR2_SCHEMA,
        )
        del filled
        for start in range(0, max(table.num_rows, 1), ROWS_PER_FILE):
            part = len(self.written) + 1
            path = self.data_dir / f"{self.export_name}-{part:05d}.snappy.parquet"
            pq.write_table(table.slice(start, ROWS_PER_FILE), path, compression="snappy")
            self.written.append(path)
        self.payers.update(_payers(lines))

    def close(self) -> list[Path]:
        """Write the manifest last, naming every part; return the files written."""
        export_name, root = self.export_name, self.root
        base = f"s3://{self.bucket}/"
        base += self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""
        payer = min(self.payers) if self.payers else "000000000000"
        manifest = {
            "executionId": self.exec_id,
            "exportArn": (
                f"arn:aws:bcm-data-exports:us-east-1:{payer}:export/"
                f"{export_name}-{uuid.uuid5(_NS, export_name)}"
            ),
            "billingPeriod": str(self.period),
            "columns": [{"name": f.name, "type": _MANIFEST_TYPE[f.type]} for f in CUR2_SCHEMA],
            "dataFiles": [base + p.relative_to(root).as_posix() for p in self.written],
            "additionalOutputFiles": [],
        }
        meta_dir = root / export_name / "metadata" / self.partition
        meta_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = meta_dir / f"{export_name}-Manifest.json"
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, manifest_path)  # readers see the old manifest or the new one, never half
        return [*self.written, manifest_path]


def _payers(lines: pa.Table) -> set[str]:
    """The account ids of a chunk; the export ARN names the smallest of the whole delivery."""
    return {a for a in lines.column("account_id").unique().to_pylist() if a}
