"""AWS CUR 2.0: the writer lays generator lines out as Data Exports does, the connector reads
them back exactly; restatements, incomplete deliveries and legacy CUR are caught by name."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA

from connectors.aws_cur2 import AwsCur2Connector, AwsCur2Settings
from connectors.base import Delivery, NormalizeContext, SourceError
from revshare.generate import aws
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.schema import BILLING_SCHEMA

pytestmark = pytest.mark.integration

DATA = SHARED_DATA / "aws"
EXPORT = "revshare-bedrock"
MAY = Period(2025, 5)
SKU = "USE1-Llama3-3-70B-input-tokens"
CATEGORY = {"usage": "Usage", "tax": "Tax", "credit": "Credit", "refund": "Credit"}


def _line(i: int, kind: str, cost: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "line_id": f"aws-{kind}-{i}",
        "partner": "aws",
        "account_id": "111122223333",
        "account_name": "Acme Corp",
        "currency": "USD",
        "usage_start": datetime(2025, 5, 1 + i % 28, i % 24, tzinfo=UTC),
        "usage_end": datetime(2025, 5, 1 + i % 28, i % 24, 59, 59, tzinfo=UTC),
        "billing_period": "2025-05",
        "region": "us-east-1",
        "kind": kind,
        "licensed": kind == "usage",
        "service": "AmazonBedrock",
        "sku_key": SKU if kind != "tax" else "Tax",
        "sku_id": None,
        "quantity": D("1234.5") if kind == "usage" else D(0),
        "unit_price": D("0.00072") if kind == "usage" else D(0),
        "cost": D(cost),
        "credits": None,
        "credit_price": None,
        "parent_line_id": None,
    }
    row.update(kw)
    return row


def _lines(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


# Awkward but realistic money: 12-decimal costs, tiny and large values, negatives.
MONEY = ["0.1", "0.000000000001", "123.456789012345", "0.888840000000", "99999.99", "1e-7"]


def _month() -> pa.Table:
    rows = [_line(i, "usage", c) for i, c in enumerate(MONEY)]
    rows += [
        _line(10, "tax", "4.71"),
        _line(11, "credit", "-0.0888840001", parent_line_id="aws-usage-3"),
        _line(12, "refund", "-12.345678901234", parent_line_id="aws-usage-2"),
    ]
    return _lines(rows)


def _connector(root: Path) -> AwsCur2Connector:
    return AwsCur2Connector(
        AwsCur2Settings(type="aws_cur2", path=str(root), export_name=EXPORT), root, "aws/billing"
    )


def _ctx(root: Path, delivery: Delivery, period: Period = MAY) -> NormalizeContext:
    return NormalizeContext(
        partner_id="aws",
        period=period,
        snapshot_id="snap-aws-1",
        snapshot_dir=root,
        files=tuple(sorted(f.relpath for f in delivery.files)),
    )


def _run(sql: str, tz: str = "UTC") -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute(f"SET TimeZone = '{tz}'")
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    # Arrow labels TIMESTAMPTZ with the session zone; relabelling to UTC keeps every instant.
    utc = pa.timestamp("us", tz="UTC")
    table = table.cast(
        pa.schema([f.with_type(utc) if pa.types.is_timestamp(f.type) else f for f in table.schema])
    )
    # DuckDB does not carry nullability: check types, then that required columns hold values.
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in BILLING_SCHEMA]
    for field in BILLING_SCHEMA:
        if not field.nullable:
            assert table.column(field.name).null_count == 0, field.name
    table = table.cast(BILLING_SCHEMA)
    assert table.schema == BILLING_SCHEMA
    return table


def _normalize(root: Path, period: Period = MAY, tz: str = "UTC") -> tuple[Delivery, pa.Table]:
    conn = _connector(root)
    delivery = conn.locate(period)
    return delivery, _run(conn.normalize_sql(_ctx(root, delivery, period)), tz)


def _totals(table: pa.Table, key: str, value: str) -> dict[str, D]:
    out: dict[str, D] = {}
    for k, v in zip(table.column(key).to_pylist(), table.column(value).to_pylist(), strict=True):
        out[k] = out.get(k, D(0)) + v
    return out


def _manifest(root: Path, period: Period = MAY) -> Path:
    return root / EXPORT / "metadata" / f"BILLING_PERIOD={period}" / f"{EXPORT}-Manifest.json"


# -- writer ------------------------------------------------------------------------------------


def test_writer_layout_columns_and_manifest(tmp_path: Path) -> None:
    written = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    exec_id = aws.execution_id(EXPORT, MAY, 1)
    part = tmp_path / EXPORT / "data" / "BILLING_PERIOD=2025-05" / exec_id
    assert written == [part / f"{EXPORT}-00001.snappy.parquet", _manifest(tmp_path)]

    schema = pq.read_schema(written[0])
    if (DATA / "cur2_columns.txt").exists():
        want = [c.strip() for c in (DATA / "cur2_columns.txt").read_text().split(",")]
        assert schema.names == want
    assert len(schema.names) == 116
    assert schema.field("line_item_unblended_cost").type == pa.float64()
    assert schema.field("line_item_usage_amount").type == pa.float64()
    assert schema.field("line_item_unblended_rate").type == pa.string()
    assert pa.types.is_map(schema.field("product").type)
    assert pa.types.is_timestamp(schema.field("line_item_usage_start_date").type)
    assert pq.ParquetFile(written[0]).metadata.row_group(0).column(0).compression == "SNAPPY"

    m = json.loads(written[1].read_text())
    assert m["executionId"] == exec_id
    assert m["exportArn"].startswith("arn:aws:bcm-data-exports:")
    assert m["dataFiles"] == [
        f"s3://revshare-billing/cur2/{EXPORT}/data/BILLING_PERIOD=2025-05/{exec_id}/"
        f"{EXPORT}-00001.snappy.parquet"
    ]
    assert [c["name"] for c in m["columns"]] == schema.names
    assert m["additionalOutputFiles"] == []

    t = pq.read_table(written[0])
    assert t.column("line_item_line_item_type").to_pylist() == ["Usage"] * 6 + [
        "Tax", "Credit", "Refund",
    ]  # fmt: skip
    assert set(t.column("bill_invoice_id").to_pylist()) == {""}
    assert set(t.column("bill_billing_entity").to_pylist()) == {"AWS"}
    assert t.column("line_item_unblended_rate").to_pylist()[0] == "0.00072"


def test_writer_is_deterministic(tmp_path: Path) -> None:
    a = aws.write(_month(), MAY, tmp_path / "a", export_name=EXPORT)
    b = aws.write(_month(), MAY, tmp_path / "b", export_name=EXPORT)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_writer_splits_into_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 4)
    written = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    assert [p.name for p in written[:-1]] == [f"{EXPORT}-0000{i}.snappy.parquet" for i in (1, 2, 3)]
    assert len(json.loads(written[-1].read_text())["dataFiles"]) == 3


# -- round trip --------------------------------------------------------------------------------


def test_round_trip_exact_money_per_category(tmp_path: Path) -> None:
    lines = _month()
    aws.write(lines, MAY, tmp_path, export_name=EXPORT)
    delivery, out = _normalize(tmp_path)

    assert delivery.version == aws.execution_id(EXPORT, MAY, 1)
    assert out.num_rows == lines.num_rows
    want = _totals(lines, "kind", "cost")
    want_cat: dict[str, D] = {}
    for kind, total in want.items():
        want_cat[CATEGORY[kind]] = want_cat.get(CATEGORY[kind], D(0)) + total
    assert _totals(out, "ChargeCategory", "BilledCost") == want_cat
    # Each cost exactly, not only the sums.
    by_id = dict(zip(out["x_NativeLineId"].to_pylist(), out["BilledCost"].to_pylist(), strict=True))
    for line_id, cost in zip(lines["line_id"].to_pylist(), lines["cost"].to_pylist(), strict=True):
        assert by_id[line_id] == cost, line_id

    usage = out.filter(pc.equal(out["ChargeCategory"], "Usage")).to_pylist()
    assert {r["PricingQuantity"] for r in usage} == {D("1234.5")}
    assert {r["ConsumedQuantity"] for r in usage} == {D("1234.5")}
    assert {r["ListUnitPrice"] for r in usage} == {D("0.00072")}
    assert {r["x_SkuKey"] for r in usage} == {SKU}
    first = usage[0]
    assert first["ServiceName"] == "Amazon Bedrock"
    assert first["ServiceCategory"] == "AI and Machine Learning"
    assert first["RegionId"] == "us-east-1"
    assert first["ProviderName"] == first["PublisherName"] == "AWS"
    assert first["BillingAccountId"] == "111122223333"
    assert first["BillingCurrency"] == "USD"
    assert first["InvoiceId"] is None  # blank until AWS finalizes the month
    assert first["BillingPeriodStart"] == datetime(2025, 5, 1, tzinfo=UTC)
    assert first["BillingPeriodEnd"] == datetime(2025, 6, 1, tzinfo=UTC)
    assert first["ChargePeriodStart"] == datetime(2025, 5, 1, 0, tzinfo=UTC)
    tax = out.filter(pc.equal(out["ChargeCategory"], "Tax")).to_pylist()[0]
    assert tax["x_SkuKey"] == "Tax" and tax["ConsumedQuantity"] is None
    assert out.column("x_ModelId").null_count == out.num_rows  # the catalog's job


def test_period_filter_keeps_only_the_period(tmp_path: Path) -> None:
    april = _line(20, "usage", "5.5", billing_period="2025-04",
                  usage_start=datetime(2025, 4, 30, 23, tzinfo=UTC),
                  usage_end=datetime(2025, 4, 30, 23, 59, tzinfo=UTC))  # fmt: skip
    lines = pa.concat_tables([_month(), _lines([april])])
    aws.write(lines, MAY, tmp_path, export_name=EXPORT)
    _, out = _normalize(tmp_path)
    assert out.num_rows == lines.num_rows - 1
    assert "aws-usage-20" not in out["x_NativeLineId"].to_pylist()
    # Asking for April finds no April partition at all.
    with pytest.raises(SourceError, match=r"no CUR 2\.0 manifest"):
        _connector(tmp_path).locate(Period(2025, 4))


def test_zoneless_timestamps_are_utc(tmp_path: Path) -> None:
    """CUR timestamps without a zone are UTC, whatever the session's zone is."""
    (data, _) = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    t = pq.read_table(data)
    for name in ("bill_billing_period_start_date", "bill_billing_period_end_date",
                 "line_item_usage_start_date", "line_item_usage_end_date"):  # fmt: skip
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, t[name].cast(pa.timestamp("ms")))
    pq.write_table(t, data)
    _, out = _normalize(tmp_path, tz="America/Los_Angeles")
    assert out.num_rows == 9
    assert set(out["BillingPeriodStart"].to_pylist()) == {datetime(2025, 5, 1, tzinfo=UTC)}


def test_lineage_points_at_the_source_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 4)  # three parts, so rows restart per file
    aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    delivery, out = _normalize(tmp_path)
    data_files = {f.relpath for f in delivery.files if f.relpath.endswith(".parquet")}
    assert set(out["x_SourceFile"].to_pylist()) == data_files
    assert set(out["x_PartnerId"].to_pylist()) == {"aws"}
    assert set(out["x_SnapshotId"].to_pylist()) == {"snap-aws-1"}
    assert len(set(out["x_NativeLineId"].to_pylist())) == out.num_rows
    files = {rel: pq.read_table(tmp_path / rel) for rel in data_files}
    for rel, row, line_id, cost in zip(
        out["x_SourceFile"].to_pylist(), out["x_SourceRow"].to_pylist(),
        out["x_NativeLineId"].to_pylist(), out["BilledCost"].to_pylist(), strict=True,
    ):  # fmt: skip
        src = files[rel].slice(row - 1, 1).to_pylist()[0]
        assert src["identity_line_item_id"] == line_id
        assert D(repr(src["line_item_unblended_cost"])) == cost
    assert sorted(out["x_SourceRow"].to_pylist()) == [1, 1, 1, 2, 2, 3, 3, 4, 4]


# -- restatement and incomplete deliveries -----------------------------------------------------


def test_version_2_supersedes_version_1(tmp_path: Path) -> None:
    v1 = aws.write(_month(), MAY, tmp_path, export_name=EXPORT, version=1)
    restated = _month().to_pylist()
    restated[0]["cost"] = D("0.2")  # the restatement changes one line
    restated.append(_line(30, "usage", "7.25"))
    v2 = aws.write(_lines(restated), MAY, tmp_path, export_name=EXPORT, version=2)

    delivery, out = _normalize(tmp_path)
    exec2 = aws.execution_id(EXPORT, MAY, 2)
    assert delivery.version == exec2 != aws.execution_id(EXPORT, MAY, 1)
    assert delivery.metadata["executionId"] == exec2
    assert all(p.exists() for p in v1[:-1]), "older execution folders stay on disk"
    data = [f.relpath for f in delivery.files if f.relpath.endswith(".parquet")]
    assert data == [v2[0].relative_to(tmp_path).as_posix()] and f"/{exec2}/" in data[0]
    assert out.num_rows == 10
    assert _totals(out, "ChargeCategory", "BilledCost")["Usage"] == sum(
        (r["cost"] for r in restated if r["kind"] == "usage"), D(0)
    )


def test_missing_manifest(tmp_path: Path) -> None:
    aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    _manifest(tmp_path).unlink()
    with pytest.raises(SourceError, match=r"no CUR 2\.0 manifest") as e:
        _connector(tmp_path).locate(MAY)
    assert e.value.file == f"{EXPORT}/metadata/BILLING_PERIOD=2025-05/{EXPORT}-Manifest.json"
    assert e.value.source == "aws/billing"


def test_manifest_listing_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 4)
    written = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    written[1].unlink()
    with pytest.raises(SourceError, match="missing") as e:
        _connector(tmp_path).locate(MAY)
    assert e.value.file == written[1].relative_to(tmp_path).as_posix()


def test_bad_value_names_file_row_and_column(tmp_path: Path) -> None:
    (data, _) = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    t = pq.read_table(data)
    costs = t["line_item_unblended_cost"].to_pylist()
    costs[4] = float("nan")
    i = t.schema.get_field_index("line_item_unblended_cost")
    pq.write_table(t.set_column(i, "line_item_unblended_cost", pa.array(costs)), data)
    conn = _connector(tmp_path)
    delivery = conn.locate(MAY)
    with pytest.raises(SourceError) as e:
        conn.normalize_sql(_ctx(tmp_path, delivery))
    assert (e.value.row, e.value.column) == (5, "line_item_unblended_cost")
    assert e.value.file == data.relative_to(tmp_path).as_posix()


def test_bad_value_in_a_later_part_names_that_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts of one layout are read by one scan; the error still names the part."""
    monkeypatch.setattr(aws, "ROWS_PER_FILE", 4)
    parts = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)[:-1]
    assert len(parts) == 3
    t = pq.read_table(parts[1])
    costs = t["line_item_unblended_cost"].to_pylist()
    costs[2] = float("nan")
    i = t.schema.get_field_index("line_item_unblended_cost")
    pq.write_table(t.set_column(i, "line_item_unblended_cost", pa.array(costs)), parts[1])
    conn = _connector(tmp_path)
    with pytest.raises(SourceError) as e:
        conn.normalize_sql(_ctx(tmp_path, conn.locate(MAY)))
    assert (e.value.file, e.value.row) == (parts[1].relative_to(tmp_path).as_posix(), 3)
    assert e.value.column == "line_item_unblended_cost"


def test_line_item_types_map_to_charge_categories(tmp_path: Path) -> None:
    (data, _) = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    t = pq.read_table(data)
    native = ["DiscountedUsage", "SavingsPlanCoveredUsage", "EdpDiscount", "RIFee",
              "SavingsPlanUpfrontFee", "BundledDiscount", "Fee", "SomethingNew", "Tax"]  # fmt: skip
    i = t.schema.get_field_index("line_item_line_item_type")
    pq.write_table(t.set_column(i, "line_item_line_item_type", pa.array(native)), data)
    _, out = _normalize(tmp_path)
    got = dict(zip(out["x_NativeLineId"].to_pylist(), out["ChargeCategory"].to_pylist(),
                   strict=True))  # fmt: skip
    assert [got[x] for x in t["identity_line_item_id"].to_pylist()] == [
        "Usage", "Usage", "Credit", "Purchase", "Purchase", "Credit", "Purchase", "Adjustment",
        "Tax",
    ]  # fmt: skip


# -- legacy CUR --------------------------------------------------------------------------------

LEGACY = DATA / "legacy_cur_sample.csv"
needs_legacy = pytest.mark.skipif(not LEGACY.exists(), reason="legacy CUR sample not present")


def _point_manifest_at(root: Path, relpath: str) -> None:
    m = json.loads(_manifest(root).read_text())
    m["dataFiles"] = [f"s3://revshare-billing/cur2/{relpath}"]
    _manifest(root).write_text(json.dumps(m))


@needs_legacy
def test_legacy_cur_csv_as_data_file_is_rejected(tmp_path: Path) -> None:
    (data, _) = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    legacy = data.parent / f"{EXPORT}-00001.csv"
    shutil.copy(LEGACY, legacy)
    _point_manifest_at(tmp_path, legacy.relative_to(tmp_path).as_posix())
    with pytest.raises(SourceError, match="legacy AWS Cost and Usage Report") as e:
        _connector(tmp_path).locate(MAY)
    assert "lineItem/" in str(e.value) or "identity/" in str(e.value)
    assert "CUR 2.0 reader cannot read it" in str(e.value)


@needs_legacy
def test_legacy_cur_as_parquet_is_rejected_at_normalize(tmp_path: Path) -> None:
    """Even past locate (a snapshot landed by other means), normalize refuses legacy columns."""
    (data, _) = aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    pq.write_table(pacsv.read_csv(LEGACY), data)
    rel = data.relative_to(tmp_path).as_posix()
    ctx = NormalizeContext("aws", MAY, "snap-x", tmp_path, (rel,))
    with pytest.raises(SourceError, match="legacy AWS Cost and Usage Report") as e:
        _connector(tmp_path).normalize_sql(ctx)
    assert e.value.file == rel


def test_legacy_manifest_and_layout_are_rejected(tmp_path: Path) -> None:
    aws.write(_month(), MAY, tmp_path, export_name=EXPORT)
    _manifest(tmp_path).write_text(json.dumps({
        "assemblyId": "0b5f9c4e", "billingPeriod": {"start": "20250501T000000.000Z"},
        "reportKeys": ["cur/revshare-bedrock/20250501-20250601/0b5f9c4e/x-1.csv.gz"],
        "columns": [{"category": "lineItem", "name": "UsageStartDate", "type": "DateTime"}],
    }))  # fmt: skip
    with pytest.raises(SourceError, match="legacy AWS Cost and Usage Report"):
        _connector(tmp_path).locate(MAY)

    other = tmp_path / "legacy_only"
    (other / EXPORT / "20250501-20250601" / "0b5f9c4e").mkdir(parents=True)
    with pytest.raises(SourceError, match="legacy period folder"):
        _connector(other).locate(MAY)


# -- settings for pulling from S3 (the pull itself: tests/cloud/test_aws_s3.py) ---------------


def test_s3_settings_validate_names_and_never_echo_secrets() -> None:
    s = AwsCur2Settings(type="aws_cur2", path="s3://acme-billing.exports/cur2/", export_name=EXPORT)
    assert s.remote is not None
    assert (s.remote.bucket, s.remote.prefix) == ("acme-billing.exports", "cur2")
    assert s.remote.uri(f"{EXPORT}/x") == f"s3://acme-billing.exports/cur2/{EXPORT}/x"
    assert AwsCur2Settings(type="aws_cur2", path="local", export_name=EXPORT).remote is None
    for bucket in ["ab", "Upper", "a..b", "-dash", "192.168.0.1", "xn--abc", "name-s3alias",
                   "a" * 64, "under_score"]:  # fmt: skip
        with pytest.raises(ValueError, match="invalid S3 bucket name"):
            AwsCur2Settings(type="aws_cur2", path=f"s3://{bucket}/p", export_name=EXPORT)
    for prefix in ["a//b", "a/../b", "a\\b"]:
        with pytest.raises(ValueError, match="invalid S3 prefix"):
            AwsCur2Settings(type="aws_cur2", path=f"s3://bkt-1/{prefix}", export_name=EXPORT)
    with pytest.raises(ValueError, match="only apply when path is an s3:// URI"):
        AwsCur2Settings(type="aws_cur2", path="local", export_name=EXPORT, region="us-east-1")
    with pytest.raises(ValueError) as e:
        AwsCur2Settings(type="aws_cur2", path="s3://bkt-1", export_name=EXPORT,
                        endpoint_url="https://AKIA:hunter2secret@s3.example.com")  # fmt: skip
    assert "hunter2secret" not in str(e.value)


def test_remote_source_is_fetched_not_located(tmp_path: Path) -> None:
    s = AwsCur2Settings(type="aws_cur2", path="s3://bkt-1/cur2", export_name=EXPORT)
    with pytest.raises(SourceError, match="pulled with fetch"):
        AwsCur2Connector(s, tmp_path, "aws/billing").locate(MAY)
    # A local source's fetch is its locate: files are read where they are, staging unused.
    aws.write(_month(), MAY, tmp_path / "local", export_name=EXPORT)
    conn = _connector(tmp_path / "local")
    assert conn.fetch(MAY, tmp_path / "staging") == conn.locate(MAY)
    assert not (tmp_path / "staging").exists()
