"""The FOCUS connector against the FinOps Foundation's real FOCUS 1.0 sample and files derived
from it (1.3 names, Parquet, gzip, broken columns), plus the legacy CUR sample it must refuse."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA

from connectors.base import NormalizeContext, SourceError
from connectors.focus import FocusConnector, FocusSettings
from revshare.db import connect
from revshare.periods import Period
from revshare.schema import BILLING_SCHEMA

pytestmark = pytest.mark.integration

DATA = SHARED_DATA
SAMPLE = DATA / "focus" / "focus_1_0_sample.csv"
LEGACY_CUR = DATA / "aws" / "legacy_cur_sample.csv"
SEP = Period(2024, 9)


def _connector(root: Path, **settings: object) -> FocusConnector:
    return FocusConnector(
        FocusSettings(type="focus", path=str(root), **settings), root, "focus-test/billing"
    )


def _normalize(conn: FocusConnector, root: Path, period: Period) -> pa.Table:
    delivery = conn.locate(period)
    ctx = NormalizeContext(
        partner_id="acme",
        period=period,
        snapshot_id="snap-1",
        snapshot_dir=root,
        files=tuple(f.relpath for f in delivery.files),
    )
    sql = conn.normalize_sql(ctx)
    con = connect()
    try:
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    # Types must already be canonical; nullability is a schema property DuckDB does not carry,
    # so check the required columns hold no nulls, then the cast is exact.
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in BILLING_SCHEMA]
    for field in BILLING_SCHEMA:
        if not field.nullable:
            assert table.column(field.name).null_count == 0, field.name
    table = table.cast(BILLING_SCHEMA)
    assert table.schema == BILLING_SCHEMA
    return table


def _sample_rows() -> list[dict[str, str]]:
    with SAMPLE.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _null(text: str) -> str | None:
    """The sample writes nulls as NULL (and a few as empty strings): both read as null."""
    return None if text in ("NULL", "") else text


def _write_csv(path: Path, rows: list[dict[str, str]], fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    root = tmp_path / "focus"
    root.mkdir()
    shutil.copy(SAMPLE, root / SAMPLE.name)
    (root / "README.txt").write_text("not data")  # must be ignored by locate
    return root


def test_sample_all_periods_exact(sample_dir: Path) -> None:
    raw = f"read_csv('{sample_dir / SAMPLE.name}', all_varchar = true, nullstr = 'NULL')"
    periods = [
        Period.parse(p)
        for (p,) in duckdb.sql(
            f"SELECT DISTINCT strftime(CAST(BillingPeriodStart AS TIMESTAMP), '%Y-%m') "
            f"FROM {raw} ORDER BY 1"
        ).fetchall()
    ]
    assert [str(p) for p in periods] == ["2024-09", "2024-10"]
    conn = _connector(sample_dir)
    assert [f.relpath for f in conn.locate(SEP).files] == [SAMPLE.name]

    tables = {p: _normalize(conn, sample_dir, p) for p in periods}
    assert sum(t.num_rows for t in tables.values()) == 1000
    assert {str(p): t.num_rows for p, t in tables.items()} == {"2024-09": 999, "2024-10": 1}
    for p, t in tables.items():  # every row inside its own period, boundaries in UTC
        assert set(t.column("BillingPeriodStart").to_pylist()) == {p.start}
    assert _normalize(conn, sample_dir, Period(2024, 8)).num_rows == 0

    lines = pa.concat_tables(tables.values())
    (expected,) = duckdb.sql(
        f"SELECT SUM(CAST(BilledCost AS DECIMAL(38,12))) FROM {raw}"
    ).fetchone()
    got = sum(lines.column("BilledCost").to_pylist(), Decimal(0))
    assert got == expected and got != 0
    per_cat = dict(
        duckdb.sql(
            f"SELECT ChargeCategory, SUM(CAST(EffectiveCost AS DECIMAL(38,12))) "
            f"FROM {raw} GROUP BY 1"
        ).fetchall()
    )
    mine = dict(
        duckdb.sql("SELECT ChargeCategory, SUM(EffectiveCost) FROM lines GROUP BY 1").fetchall()
    )
    assert mine == per_cat

    assert set(lines.column("ProviderName").to_pylist()) == {"AWS", "Microsoft", "Oracle"}
    assert lines.column("x_SkuKey").null_count == 0
    assert set(lines.column("x_PartnerId").to_pylist()) == {"acme"}
    assert set(lines.column("x_SnapshotId").to_pylist()) == {"snap-1"}
    assert set(lines.column("x_SourceFile").to_pylist()) == {SAMPLE.name}
    ids = lines.column("x_NativeLineId").to_pylist()
    assert len(set(ids)) == 1000

    # Lineage: x_SourceRow N is data row N of the file (checked field by field, every row).
    src = _sample_rows()
    assert sorted(lines.column("x_SourceRow").to_pylist()) == list(range(1, 1001))
    for line in lines.select(
        [
            "x_SourceRow",
            "x_NativeLineId",
            "BilledCost",
            "SkuPriceId",
            "ChargeDescription",
            "ResourceId",
            "ChargePeriodStart",
        ]
    ).to_pylist():
        row = src[line["x_SourceRow"] - 1]
        assert line["x_NativeLineId"] == f"{SAMPLE.name}:{line['x_SourceRow']}"
        assert line["BilledCost"] == Decimal(row["BilledCost"])
        assert line["SkuPriceId"] == _null(row["SkuPriceId"])
        assert line["ChargeDescription"] == row["ChargeDescription"]
        assert line["ResourceId"] == _null(row["ResourceId"])
        naive = datetime.fromisoformat(row["ChargePeriodStart"])
        assert line["ChargePeriodStart"] == naive.replace(tzinfo=UTC)

    # The marketplace row: sold through AWS, published by Red Hat, kept with its cost.
    (market,) = [r for r in lines.to_pylist() if r["PublisherName"] == "Red Hat Inc."]
    assert market["ProviderName"] == "AWS"
    assert market["BilledCost"] == Decimal("0.342")
    assert market["x_SourceRow"] == 444  # line 445 of the file, after the header
    assert market["InvoiceIssuerName"] == "Amazon Web Services, Inc."
    # Nulls written as NULL are nulls, and 1.2-only columns absent from 1.0 are null.
    assert lines.column("ChargeClass").null_count == 1000
    assert lines.column("InvoiceId").null_count == 1000


def test_provider_filter(sample_dir: Path) -> None:
    t = _normalize(_connector(sample_dir, provider_name="Oracle"), sample_dir, SEP)
    assert t.num_rows == 6
    assert set(t.column("ProviderName").to_pylist()) == {"Oracle"}


def test_focus_13_names_csv_gz_and_parquet(tmp_path: Path) -> None:
    """1.3 renames ProviderName; extra columns (Id, x_ vendor columns) are ignored."""
    rows = _sample_rows()[:40]
    fields = list(rows[0])
    # A double whose direct DOUBLE -> DECIMAL cast moves the last digit; text round-trips.
    rows[5]["BilledCost"] = "123456789.123456"
    for r in rows:
        r["ServiceProviderName"] = r.pop("ProviderName")
        r["HostProviderName"] = "SomeHost"
        r["x_VendorThing"] = "ignored"
        r["x_PartnerId"] = "forged"  # a file's own x_ columns never override ours
    fields13 = [
        *(f if f != "ProviderName" else "ServiceProviderName" for f in fields),
        "HostProviderName",
        "x_VendorThing",
        "x_PartnerId",
    ]
    root = tmp_path / "focus13"
    _write_csv(root / "a" / "part-1.csv.gz", rows, fields13)
    # Parquet, with money as doubles and timestamps as naive TIMESTAMPs, as some vendors write.
    table = duckdb.sql(
        f"SELECT * REPLACE (CAST(BilledCost AS DOUBLE) AS BilledCost, "
        f"CAST(BillingPeriodStart AS TIMESTAMP) AS BillingPeriodStart) "
        f"FROM read_csv('{root / 'a' / 'part-1.csv.gz'}', all_varchar = true, nullstr = 'NULL')"
    ).to_arrow_table()
    (root / "b").mkdir()
    pq.write_table(table, root / "b" / "part-1.parquet")

    conn = _connector(root)
    assert [f.relpath for f in conn.locate(SEP).files] == ["a/part-1.csv.gz", "b/part-1.parquet"]
    t = _normalize(conn, root, SEP)
    assert t.num_rows == 80
    expected_providers = [r["ServiceProviderName"] for r in rows]
    for rel in ("a/part-1.csv.gz", "b/part-1.parquet"):
        part = t.filter(pa.compute.equal(t.column("x_SourceFile"), rel))
        assert part.column("x_SourceRow").to_pylist() == list(range(1, 41))
        assert part.column("ProviderName").to_pylist() == expected_providers
        assert set(part.column("x_PartnerId").to_pylist()) == {"acme"}
        costs = part.column("BilledCost").to_pylist()
        assert costs == [Decimal(r["BilledCost"]) for r in rows]


def test_zoned_and_zoneless_timestamps(tmp_path: Path) -> None:
    rows = _sample_rows()[:3]
    rows[0]["ChargePeriodStart"] = "2024-09-18T22:00:00Z"
    rows[1]["ChargePeriodStart"] = "2024-09-19T00:30:00+02:00"
    rows[2]["ChargePeriodStart"] = "2024-09-18 22:00:00"
    root = tmp_path / "tz"
    _write_csv(root / "f.csv", rows, list(rows[0]))
    t = _normalize(_connector(root), root, SEP)
    want = datetime(2024, 9, 18, 22, 0, tzinfo=UTC)
    assert t.column("ChargePeriodStart").to_pylist() == [want, want.replace(minute=30), want]


def test_row_numbers_survive_multiline_fields(tmp_path: Path) -> None:
    rows = _sample_rows()[:10]
    rows[2]["ChargeDescription"] = "line one\nline two, with a comma"
    root = tmp_path / "ml"
    _write_csv(root / "f.csv", rows, list(rows[0]))
    t = _normalize(_connector(root), root, SEP)
    got = dict(
        zip(
            t.column("x_SourceRow").to_pylist(),
            t.column("ChargeDescription").to_pylist(),
            strict=True,
        )
    )
    assert got == {i + 1: r["ChargeDescription"] for i, r in enumerate(rows)}


def _expect_error(root: Path, *, period: Period = SEP) -> SourceError:
    with pytest.raises(SourceError) as info:
        _normalize(_connector(root), root, period)
    return info.value


def test_missing_mandatory_column(tmp_path: Path) -> None:
    rows = _sample_rows()[:5]
    root = tmp_path / "nocost"
    _write_csv(root / "x" / "bad.csv", rows, [f for f in rows[0] if f != "BilledCost"])
    err = _expect_error(root)
    assert err.file == "x/bad.csv" and err.column == "BilledCost"
    assert "BilledCost" in str(err) and "x/bad.csv" in str(err) and "FOCUS 1.0" in str(err)


def test_text_in_billed_cost(tmp_path: Path) -> None:
    rows = _sample_rows()[:20]
    rows[6]["BilledCost"] = "12,50 EUR"
    root = tmp_path / "text"
    _write_csv(root / "bad.csv", rows, list(rows[0]))
    err = _expect_error(root)
    assert (err.file, err.row, err.column) == ("bad.csv", 7, "BilledCost")
    assert "12,50 EUR" in str(err)


def test_bad_timestamp_and_empty_required(tmp_path: Path) -> None:
    rows = _sample_rows()[:20]
    rows[3]["BillingPeriodStart"] = "September"
    root = tmp_path / "ts"
    _write_csv(root / "bad.csv", rows, list(rows[0]))
    err = _expect_error(root)
    assert (err.row, err.column) == (4, "BillingPeriodStart")
    rows = _sample_rows()[:20]
    rows[11]["ServiceName"] = "NULL"
    _write_csv(root / "bad.csv", rows, list(rows[0]))
    err = _expect_error(root)
    assert (err.row, err.column) == (12, "ServiceName")


def test_legacy_cur_is_not_focus(tmp_path: Path) -> None:
    root = tmp_path / "cur"
    root.mkdir()
    shutil.copy(LEGACY_CUR, root / "report-1.csv")
    err = _expect_error(root)
    assert "not a FOCUS file" in str(err) and "legacy AWS Cost and Usage Report" in str(err)
    assert err.file == "report-1.csv"


def test_locate_without_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.json").write_text("{}")
    with pytest.raises(SourceError, match="no FOCUS data files"):
        _connector(tmp_path / "empty").locate(SEP)
    with pytest.raises(SourceError, match="does not exist"):
        _connector(tmp_path / "nowhere").locate(SEP)


# -- AWS Data Exports layout (a "FOCUS 1.2 with AWS columns" export) ---------------------------

EXPORT = "acme-focus"


def _aws_export(root: Path, exec_id: str, rows: list[dict[str, str]]) -> list[str]:
    """One execution of a Data Exports FOCUS export on disk; the manifest points at it."""
    part = f"{EXPORT}/data/BILLING_PERIOD={SEP}/{exec_id}"
    rel = f"{part}/{EXPORT}-00001.csv.gz"
    _write_csv(root / rel, rows, list(rows[0]))
    man = f"{EXPORT}/metadata/BILLING_PERIOD={SEP}/{EXPORT}-Manifest.json"
    (root / man).parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "executionId": exec_id,
        "exportArn": "arn:aws:bcm-data-exports:us-east-1:111122223333:export/x",
        "columns": [],
        "dataFiles": [f"s3://bkt-1/pre/{rel}"],
    }
    (root / man).write_text(json.dumps(manifest))
    return [man, rel]


def test_aws_export_layout_reads_only_the_manifest_files(tmp_path: Path) -> None:
    rows = _sample_rows()
    aws_rows = [r for r in rows if r["ProviderName"] == "AWS"][:30]
    _aws_export(tmp_path, "exec-1", aws_rows)
    newer = [dict(r, BilledCost="1.5") for r in aws_rows[:10]]
    files = _aws_export(tmp_path, "exec-2", newer)  # rewrites the manifest

    conn = _connector(tmp_path, export_name=EXPORT)
    delivery = conn.locate(SEP)
    assert delivery.version == "exec-2"
    assert [f.relpath for f in delivery.files] == sorted(files)
    t = _normalize(conn, tmp_path, SEP)  # the manifest in the delivery is not read as data
    assert t.num_rows == 10 and set(t.column("BilledCost").to_pylist()) == {Decimal("1.5")}
    assert set(t.column("x_SourceFile").to_pylist()) == {files[1]}
    # The plain-folder mode over the same tree would read both executions: the manifest matters.
    assert len(_connector(tmp_path).locate(SEP).files) == 2


def test_aws_export_layout_errors(tmp_path: Path) -> None:
    conn = _connector(tmp_path, export_name=EXPORT)
    with pytest.raises(SourceError, match="no Data Exports manifest") as e:
        conn.locate(SEP)
    assert e.value.file == f"{EXPORT}/metadata/BILLING_PERIOD=2024-09/{EXPORT}-Manifest.json"
    _, data = _aws_export(tmp_path, "exec-1", _sample_rows()[:3])
    (tmp_path / data).unlink()
    with pytest.raises(SourceError, match="delivery is incomplete") as e:
        conn.locate(SEP)
    assert e.value.file == data


def test_remote_settings() -> None:
    s = FocusSettings(type="focus", path="s3://my-billing/exports", export_name=EXPORT,
                      endpoint_url="http://127.0.0.1:9000", region="eu-west-1")  # fmt: skip
    assert s.remote is not None and (s.remote.bucket, s.remote.prefix) == ("my-billing", "exports")
    with pytest.raises(SourceError, match="pulled with fetch"):
        FocusConnector(s, Path("."), "x/billing").locate(SEP)
    bad = [
        {"path": "s3://my-billing/exports"},  # no export_name: no manifest to drive the pull
        {"path": "s3://My_Billing/x", "export_name": EXPORT},
        {"path": "s3://bk/x", "export_name": EXPORT},
        {"path": "local/folder", "endpoint_url": "http://127.0.0.1:9000"},
        {"path": "s3://my-billing", "export_name": "../x"},
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            FocusSettings(type="focus", **kw)
