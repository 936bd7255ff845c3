"""The standard connector suite (``standard.py``) applied to every registered connector.

Native input comes from the generator's cloud writers (``revshare.generate.<cloud>``) where
they exist, from the public samples in ``../shared/data`` (FOCUS, OCI), and from small writers
here (Databricks system tables, statements). Expected totals are computed from the native
data, never from the connector under test.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA
from standard import ConnectorCase, StandardSuite, Totals

from connectors import BUILTIN, registry
from revshare.generate import aws, azure, gcp, partner_lines, snowflake
from revshare.generate.usage import finalize
from revshare.periods import Period
from revshare.sqlutil import lit

pytestmark = pytest.mark.integration

OCT, NOV = Period(2026, 10), Period(2026, 11)


def _sum_by(rows: list[tuple[str, Decimal]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for ccy, v in rows:
        out[ccy] = out.get(ccy, Decimal(0)) + v
    return out


def _gen(partner: str, period: Period) -> pa.Table:
    seed = [7, period.year, period.month, len(partner)]
    return finalize(partner_lines(partner, period, 400, np.random.default_rng(seed)))


def _gen_totals(lines: pa.Table, period: Period) -> dict[str, Decimal]:
    return _sum_by(
        [(r["currency"], r["cost"]) for r in lines.to_pylist()
         if r["billing_period"] == str(period)]
    )  # fmt: skip


def _rewrite_parquet(path: Path, edit: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(edit(pq.read_table(path)), path)


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.rglob(pattern))[0]


# -- AWS CUR 2.0 ------------------------------------------------------------------------------


def _aws_write(root: Path, period: Period) -> Totals:
    lines = _gen("aws", period)
    aws.write(lines, period, root / "cur2", export_name="suite")
    return _gen_totals(lines, period)


def _aws_spoil(root: Path, period: Period) -> None:
    path = _first(root / "cur2", "*.parquet")
    _rewrite_parquet(path, lambda t: t.drop_columns(["line_item_unblended_cost"]))


class TestAwsCur2(StandardSuite):
    case = ConnectorCase(
        "aws_cur2", {"path": "cur2", "export_name": "suite"}, _aws_write, OCT, NOV,
        _aws_spoil, bad_column="line_item_unblended_cost",
    )  # fmt: skip


# -- Google Cloud billing export ----------------------------------------------------------------

GCP_TABLE = "gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C"


def _gcp_write(root: Path, period: Period) -> Totals:
    lines = _gen("gcp", period)
    gcp.write(lines, period, root / "gcp", table=GCP_TABLE)
    return _gen_totals(lines, period)


def _gcp_spoil(root: Path, period: Period) -> None:
    path = _first(root / "gcp", "*.json.gz")
    rows = gzip.decompress(path.read_bytes()).decode().split("\n")
    rows[2] = json.dumps({**json.loads(rows[2]), "cost": "12.5 USD"})
    path.write_bytes(gzip.compress("\n".join(rows).encode()))


class TestGcpBilling(StandardSuite):
    case = ConnectorCase(
        "gcp_billing", {"path": "gcp", "table": GCP_TABLE}, _gcp_write, OCT, NOV, _gcp_spoil,
        bad_column="cost", bad_row=3,
    )  # fmt: skip


# -- Azure cost details ---------------------------------------------------------------------------


def _azure_write(root: Path, period: Period) -> Totals:
    lines = _gen("azure", period)
    azure.write(lines, period, root / "azure", export_name="suite")
    return _gen_totals(lines, period)


def _spoil_csv_gz(path: Path, row: int, column: str, value: str) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    rows[row - 1][column] = value
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def _azure_spoil(root: Path, period: Period) -> None:
    """A bad value in a complete run: the manifest's byte counts are updated to match, so
    the run is still the newest complete one (a size mismatch is a different error)."""
    blob = _first(root / "azure", "*.csv.gz")
    before = blob.stat().st_size
    _spoil_csv_gz(blob, 4, "quantity", "12,5 K")
    grown = blob.stat().st_size - before
    manifest = blob.parent / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["byteCount"] += grown
    for b in doc["blobs"]:
        if b["blobName"].endswith(blob.name):
            b["byteCount"] += grown
    manifest.write_text(json.dumps(doc))


class TestAzureCost(StandardSuite):
    case = ConnectorCase(
        "azure_cost", {"path": "azure", "export_name": "suite"}, _azure_write, OCT, NOV,
        _azure_spoil, bad_column="quantity", bad_row=4,
    )  # fmt: skip


# -- Snowflake usage views ------------------------------------------------------------------------


def _snowflake_write(root: Path, period: Period) -> Totals:
    lines = _gen("snowflake", period)
    snowflake.write(lines, period, root / "snowflake")
    # Cortex rows carry exact money (credits x rate); the daily view's other rows are
    # Snowflake's own cent-rounded figures, read from the file as Snowflake wrote them.
    cortex = [
        (r["currency"], r["cost"]) for r in lines.to_pylist()
        if r["kind"] == "usage" and (r["licensed"] or r["service"].lower() == "ai_services")
        and period.start <= r["usage_start"] < period.end
    ]  # fmt: skip
    daily = root / "snowflake" / str(period) / "USAGE_IN_CURRENCY_DAILY"
    rest = duckdb.sql(
        f"SELECT CURRENCY, USAGE_IN_CURRENCY FROM read_parquet({lit(daily / '*.parquet')}) "
        "WHERE NOT (USAGE_TYPE = 'ai_services' AND NOT IS_ADJUSTMENT)"
    ).fetchall()
    return _sum_by(cortex + [(c, Decimal(v)) for c, v in rest])


def _snowflake_spoil(root: Path, period: Period) -> None:
    path = _first(root / "snowflake" / str(period) / "CORTEX_FUNCTIONS_USAGE_HISTORY", "*.parquet")
    _rewrite_parquet(path, lambda t: t.drop_columns(["TOKEN_CREDITS"]))


class TestSnowflakeUsage(StandardSuite):
    case = ConnectorCase(
        "snowflake_usage", {"path": "snowflake"}, _snowflake_write, OCT, NOV, _snowflake_spoil,
        bad_column="TOKEN_CREDITS",
    )  # fmt: skip


# -- FOCUS (the FinOps Foundation's FOCUS 1.0 sample: Sept. and Oct. 2024 in one file) ------------

FOCUS_SAMPLE = SHARED_DATA / "focus" / "focus_1_0_sample.csv"


def _focus_write(root: Path, period: Period) -> Totals:
    (root / "focus").mkdir(exist_ok=True)
    dst = root / "focus" / FOCUS_SAMPLE.name
    if not dst.exists():
        shutil.copy(FOCUS_SAMPLE, dst)
    raw = f"read_csv({lit(dst)}, all_varchar = true, nullstr = 'NULL')"
    return dict(
        duckdb.sql(
            f"SELECT BillingCurrency, sum(CAST(BilledCost AS DECIMAL(38,12))) FROM {raw} "
            f"WHERE strftime(CAST(BillingPeriodStart AS TIMESTAMP), '%Y-%m') = '{period}' "
            "GROUP BY 1"
        ).fetchall()
    )


def _focus_spoil(root: Path, period: Period) -> None:
    _spoil_csv_gz(root / "focus" / FOCUS_SAMPLE.name, 5, "BilledCost", "12.5 USD")


class TestFocus(StandardSuite):
    case = ConnectorCase(
        "focus", {"path": "focus"}, _focus_write, Period(2024, 9), Period(2024, 10),
        _focus_spoil, bad_column="BilledCost", bad_row=5,
    )  # fmt: skip


# -- Partner statements ---------------------------------------------------------------------------

STATEMENT_HEADER = (
    "statement_id,revision,issued_date,partner_id,period,model_id,region,unit,unit_size,"
    "quantity,gross_revenue,share_rate,share_amount,currency"
)


def _statement_write(root: Path, period: Period) -> Totals:
    rows = [
        f"S-{period},1,{period.next().first_day},suite,{period},llama-3.3-70b,us-east-1,"
        f"input_tokens,1000,{1000 + i}.5,{i}.123456789012,0.15,{share},{ccy}"
        for i, (share, ccy) in enumerate(
            [("0.000000000001", "USD"), ("12.34", "usd"), ("7.5", "EUR"), ("-1.25", "USD")]
        )
    ]
    folder = root / "statements" / str(period)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "statement.csv").write_text("\n".join([STATEMENT_HEADER, *rows]) + "\n")
    return {"USD": Decimal("11.090000000001"), "EUR": Decimal("7.5")}


def _statement_spoil(root: Path, period: Period) -> None:
    _spoil_csv_gz(root / "statements" / str(period) / "statement.csv", 3, "quantity", "lots")


class TestStatementFiles(StandardSuite):
    case = ConnectorCase(
        "statement_files", {"path": "statements"}, _statement_write, OCT, NOV,
        _statement_spoil, bad_column="quantity", bad_row=3,
    )  # fmt: skip


# -- Oracle Cloud cost reports (the real sample: November 2023; December derived from it) ---------

OCI_SAMPLE = SHARED_DATA / "oci" / "oci_cost_report_sample.csv"


def _oci_write(root: Path, period: Period) -> Totals:
    """The sample as Oracle delivers it (gzip, under reports/cost-csv/), moved to ``period``
    by rewriting its dates and reference numbers, so a second month is real data too."""
    text = OCI_SAMPLE.read_text()
    if period != Period(2023, 11):
        head, *rows = text.replace("2023-11-", f"{period}-").split("\n")
        # referenceNo is the first column: prefix it, so the month's line ids are its own.
        text = "\n".join([head, *(f"{period.compact}{r}" if r else r for r in rows)])
    folder = root / "oci" / "reports" / "cost-csv"
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{period.compact}0000000001.csv.gz"
    dst.write_bytes(gzip.compress(text.encode()))
    raw = f"read_csv({lit(dst)}, all_varchar = true)"
    return dict(
        duckdb.sql(
            f'SELECT "cost/currencyCode", sum(CAST("cost/myCost" AS DECIMAL(38,12))) '
            f"FROM {raw} GROUP BY 1"
        ).fetchall()
    )


def _oci_spoil(root: Path, period: Period) -> None:
    path = root / "oci" / "reports" / "cost-csv" / f"{period.compact}0000000001.csv.gz"
    _spoil_csv_gz(path, 7, "cost/myCost", "1,5")


class TestOci(StandardSuite):
    case = ConnectorCase(
        "oci", {"path": "oci"}, _oci_write, Period(2023, 11), Period(2023, 12), _oci_spoil,
        bad_column="cost/myCost", bad_row=7,
    )  # fmt: skip


# -- Databricks system tables -------------------------------------------------------------------

DBX_PRICING = pa.struct(
    [
        ("default", pa.decimal128(30, 18)),
        ("promotional", pa.struct([("default", pa.decimal128(30, 18))])),
        ("effective_list", pa.struct([("default", pa.decimal128(30, 18))])),
    ]
)
DBX_PRICES = pa.schema(
    [
        ("price_start_time", pa.timestamp("us", tz="UTC")),
        ("price_end_time", pa.timestamp("us", tz="UTC")),
        ("account_id", pa.string()),
        ("sku_name", pa.string()),
        ("cloud", pa.string()),
        ("currency_code", pa.string()),
        ("usage_unit", pa.string()),
        ("pricing", DBX_PRICING),
    ]
)
DBX_USAGE = pa.schema(
    [
        ("record_id", pa.string()),
        ("account_id", pa.string()),
        ("workspace_id", pa.string()),
        ("sku_name", pa.string()),
        ("cloud", pa.string()),
        ("usage_start_time", pa.timestamp("us", tz="UTC")),
        ("usage_end_time", pa.timestamp("us", tz="UTC")),
        ("usage_date", pa.date32()),
        ("custom_tags", pa.map_(pa.string(), pa.string())),
        ("usage_unit", pa.string()),
        ("usage_quantity", pa.decimal128(38, 18)),
        ("usage_metadata", pa.struct([("endpoint_name", pa.string()),
                                      ("endpoint_id", pa.string())])),
        ("record_type", pa.string()),
        ("ingestion_date", pa.date32()),
        ("billing_origin_product", pa.string()),
    ]
)  # fmt: skip
SERVING = "PREMIUM_SERVERLESS_REAL_TIME_INFERENCE_US_EAST_N_VIRGINIA"
JOBS = "PREMIUM_JOBS_SERVERLESS_COMPUTE_US_EAST_N_VIRGINIA"
#: (sku, start, end, default, effective_list): the serving price drops on 2026-10-15.
DBX_PRICE_ROWS = [
    (SERVING, datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC), "0.082", None),
    (SERVING, datetime(2026, 10, 15, tzinfo=UTC), None, "0.07", "0.065"),
    (JOBS, datetime(2024, 1, 1, tzinfo=UTC), None, "0.35", None),
]


def _dbx_prices() -> pa.Table:
    rows = [
        {
            "price_start_time": s, "price_end_time": e, "account_id": "acct-1", "sku_name": sku,
            "cloud": "AWS", "currency_code": "USD", "usage_unit": "DBU",
            "pricing": {"default": Decimal(d), "promotional": None,
                        "effective_list": {"default": Decimal(eff)} if eff else None},
        }
        for sku, s, e, d, eff in DBX_PRICE_ROWS
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=DBX_PRICES)


def _dbx_price(sku: str, when: datetime) -> Decimal:
    for s, start, end, d, eff in DBX_PRICE_ROWS:
        if s == sku and start <= when and (end is None or when < end):
            return Decimal(eff or d)
    raise AssertionError(sku)


def _dbx_usage(period: Period) -> pa.Table:
    rng = np.random.default_rng([period.year, period.month])
    rows = []
    for i in range(60):
        day = period.start + timedelta(days=int(rng.integers(0, period.days)))
        start = day + timedelta(hours=int(rng.integers(0, 24)))
        sku = SERVING if i % 3 else JOBS
        qty = Decimal(int(rng.integers(1, 10**12))) / Decimal(10**9)  # sub-DBU precision
        kind = "ORIGINAL"
        if i % 17 == 16:  # a retraction of an earlier record, negative quantity
            kind, qty = "RETRACTION", -qty
        rows.append({
            "record_id": f"{period}-{i:04d}", "account_id": "acct-1", "workspace_id": "12345",
            "sku_name": sku, "cloud": "AWS", "usage_start_time": start,
            "usage_end_time": start + timedelta(hours=1), "usage_date": start.date(),
            "custom_tags": [("team", "ml")] if i % 2 else [], "usage_unit": "DBU",
            "usage_quantity": qty,
            "usage_metadata": {"endpoint_name": "databricks-meta-llama-3-3-70b-instruct",
                               "endpoint_id": "ep-1"} if sku == SERVING else None,
            "record_type": kind, "ingestion_date": start.date() + timedelta(days=1),
            "billing_origin_product": "MODEL_SERVING" if sku == SERVING else "JOBS",
        })  # fmt: skip
    # Usage of the neighbouring days in the same unload: must be left out by usage_date.
    before = period.start - timedelta(hours=2)
    rows.append(
        {
            **rows[0],
            "record_id": f"{period}-early",
            "usage_start_time": before,
            "usage_end_time": before + timedelta(hours=1),
            "usage_date": before.date(),
        }
    )
    return pa.Table.from_pylist(rows, schema=DBX_USAGE)


def _dbx_write(root: Path, period: Period) -> Totals:
    """Both tables as Spark unloads them, one part file each (usage split in two parts)."""
    folder = root / "databricks" / str(period)
    (folder / "usage").mkdir(parents=True, exist_ok=True)
    (folder / "list_prices").mkdir(parents=True, exist_ok=True)
    usage = _dbx_usage(period)
    half = usage.num_rows // 2
    pq.write_table(usage.slice(0, half), folder / "usage" / "part-00000.snappy.parquet")
    pq.write_table(usage.slice(half), folder / "usage" / "part-00001.snappy.parquet")
    pq.write_table(_dbx_prices(), folder / "list_prices" / "part-00000.snappy.parquet")
    total = Decimal(0)
    for r in usage.to_pylist():
        if period.first_day <= r["usage_date"] < period.next().first_day:
            cost = r["usage_quantity"] * _dbx_price(r["sku_name"], r["usage_start_time"])
            total += cost.quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP)
    return {"USD": total}


def _dbx_spoil(root: Path, period: Period) -> None:
    path = root / "databricks" / str(period) / "usage" / "part-00000.snappy.parquet"

    def edit(t: pa.Table) -> pa.Table:  # row 4 bills a SKU no price list knows
        skus = t["sku_name"].to_pylist()
        skus[3] = "PREMIUM_UNKNOWN_SKU"
        return t.set_column(t.schema.get_field_index("sku_name"), "sku_name", pa.array(skus))

    _rewrite_parquet(path, edit)


class TestDatabricks(StandardSuite):
    case = ConnectorCase(
        "databricks", {"path": "databricks"}, _dbx_write, OCT, NOV, _dbx_spoil,
        bad_column="sku_name", bad_row=4,
    )  # fmt: skip


# -- the licensor's own usage log (probe usage) ---------------------------------------------------


def _usage_write(root: Path, period: Period) -> Totals:
    """A month of requests in two currencies, plus one from the month before (left out)."""
    folder = root / "probes" / str(period)
    folder.mkdir(parents=True, exist_ok=True)
    start = period.start
    rows = [
        f"r-{period}-{i},{(start + timedelta(hours=i)).isoformat()},llama-3.3-70b,"
        f"output_tokens,{1000 * (i + 1)},{cost},{ccy}"
        for i, (cost, ccy) in enumerate(
            [("0.000000000001", "USD"), ("12.34", "usd"), ("7.5", "EUR"), ("-1.25", "")]
        )
    ]
    rows.append(f"r-{period}-early,{(start - timedelta(hours=1)).isoformat()},llama-3.3-70b,"
                "output_tokens,5,99,USD")  # fmt: skip
    header = "request_id,timestamp,model_id,unit,tokens,cost,currency"
    (folder / "log.csv").write_text("\n".join([header, *rows]) + "\n")
    return {"USD": Decimal("11.090000000001"), "EUR": Decimal("7.5")}


def _usage_spoil(root: Path, period: Period) -> None:
    _spoil_csv_gz(root / "probes" / str(period) / "log.csv", 3, "tokens", "12,5")


class TestUsageLog(StandardSuite):
    case = ConnectorCase(
        "usage_log", {"path": "probes"}, _usage_write, OCT, NOV, _usage_spoil,
        bad_column="tokens", bad_row=3,
    )  # fmt: skip


# -- every registered connector is covered ------------------------------------------------------


def test_every_registered_connector_runs_the_standard_suite() -> None:
    covered = {c.case.type for c in StandardSuite.__subclasses__()}
    assert set(BUILTIN) <= covered, f"no standard suite for {sorted(set(BUILTIN) - covered)}"
    assert set(registry().types()) >= set(BUILTIN)


def test_databricks_price_window_and_retraction_are_exact(tmp_path: Path) -> None:
    """A spot check beyond the totals: the price in force at usage_start_time is used (the
    serving price changed mid-month), and a retraction is a Correction with negative money."""
    from standard import _run

    _dbx_write(tmp_path, OCT)
    run = _run(TestDatabricks.case, tmp_path, OCT, "spot")
    rows = {r["x_NativeLineId"]: r for r in run.table.to_pylist()}
    usage = {r["record_id"]: r for r in _dbx_usage(OCT).to_pylist()}
    assert f"{OCT}-early" not in rows
    for rid, line in rows.items():
        u = usage[rid]
        price = _dbx_price(u["sku_name"], u["usage_start_time"])
        assert line["ListUnitPrice"] == price
        assert line["ChargeClass"] == ("Correction" if u["record_type"] != "ORIGINAL" else None)
        assert (line["BilledCost"] < 0) == (u["usage_quantity"] < 0)
    assert {r["x_SkuKey"] for r in rows.values()} == {
        f"{SERVING}|databricks-meta-llama-3-3-70b-instruct",
        JOBS,
    }
    assert date(2026, 10, 1) <= min(u["usage_date"] for u in usage.values() if u["record_id"]
                                    in rows)  # fmt: skip
