"""Google Cloud billing export: generator writer -> files on disk -> connector -> canonical rows."""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest

from connectors.base import NormalizeContext, SourceError
from connectors.gcp_billing import GcpBillingConnector, GcpBillingSettings
from connectors.gcp_billing.helpers import columns_spec
from revshare.db import connect
from revshare.generate import gcp as writer
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.schema import BILLING_REQUIRED, BILLING_SCHEMA

pytestmark = pytest.mark.integration

P = Period(2025, 5)
TABLE = "gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C"
IN_70B = "Llama 3.3 70B Input tokens"
OUT_MAV = "Cloud Vertex AI Model Garden Model as a Service Llama 4 Maverick Output tokens"


def _t(day: int, hour: int, period: Period = P) -> datetime:
    return period.start + timedelta(days=day, hours=hour)


def _line(line_id: str, kind: str, cost: str, *, start: datetime, period: Period = P,
          sku: str | None = IN_70B, qty: str = "0", price: str = "0", parent: str | None = None,
          region: str = "us-central1", service: str = "Vertex AI") -> dict:  # fmt: skip
    return {
        "line_id": line_id, "partner": "gcp", "account_id": "01A2B3-C4D5E6-F7A8B9",
        "account_name": "Vertex MaaS billing", "currency": "USD",
        "usage_start": start, "usage_end": start + timedelta(hours=1),
        "billing_period": str(period), "region": region, "kind": kind, "licensed": True,
        "service": service, "sku_key": sku, "sku_id": None, "quantity": D(qty),
        "unit_price": D(price), "cost": D(cost), "credits": None, "credit_price": None,
        "parent_line_id": parent,
    }  # fmt: skip


def _lines(period: Period = P, late: bool = True) -> pa.Table:
    """Usage with 12-decimal costs, nested credits, a refund, tax and two late rows."""
    rows = [
        _line("u1", "usage", "0.889067543210", start=_t(2, 10, period), qty="1234817",
              price="0.00000072"),
        _line("u2", "usage", "1234.567890123", start=_t(3, 0, period), sku=OUT_MAV,
              region="europe-west4", qty="1073537296", price="0.00000115"),
        _line("u3", "usage", "0.000000000001", start=_t(4, 5, period), qty="1",
              price="0.00000072"),
        _line("u4", "usage", "17.25", start=_t(5, 1, period),
              sku="N2 Instance Core running in Americas", service="Compute Engine", qty="3600",
              price="0.0047916666"),
        _line("c1", "credit", "-0.088906754321", start=_t(2, 10, period), parent="u1"),
        _line("c2", "credit", "-0.5", start=_t(2, 10, period), parent="u1"),
        _line("c3", "credit", "-123.456789012", start=_t(3, 0, period), sku=OUT_MAV,
              parent="u2"),
        _line("r1", "refund", "-0.889067543210", start=_t(6, 0, period), parent="u1"),
        _line("t1", "tax", "62.65", start=_t(0, 0, period), sku="Tax"),
    ]  # fmt: skip
    if late:  # used on the last day of the month before, invoiced in this one
        prev = period.prev()
        rows += [
            _line("l1", "usage", "3.141592653589", start=_t(prev.days - 1, 23, prev),
                  qty="4363323", price="0.00000072"),
            _line("l2", "credit", "-0.314159265358", start=_t(prev.days - 1, 23, prev),
                  parent="l1"),
        ]  # fmt: skip
    for r in rows:
        r["billing_period"] = str(period)
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


def _connector(root: Path) -> GcpBillingConnector:
    settings = GcpBillingSettings(type="gcp_billing", path="billing_export", table=TABLE)
    return GcpBillingConnector(settings, data_dir=root, source_name="gcp/billing")


def _written(tmp_path: Path) -> tuple[Path, GcpBillingConnector, NormalizeContext]:
    root = tmp_path / "billing_export"
    writer.write(_lines(), P, root, table=TABLE)
    writer.write(_lines(P.next(), late=False), P.next(), root, table=TABLE)
    conn = _connector(tmp_path)
    return root, conn, _ctx(root, conn)


def _ctx(root: Path, conn: GcpBillingConnector, period: Period = P) -> NormalizeContext:
    files = tuple(sorted(f.relpath for f in conn.locate(period).files))
    return NormalizeContext("gcp", period, "snap-1", root, files)


def _run(conn: GcpBillingConnector, ctx: NormalizeContext) -> pa.Table:
    table = connect().sql(conn.normalize_sql(ctx)).to_arrow_table()
    # DuckDB does not carry nullability: check types, then that required columns hold values.
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in BILLING_SCHEMA]
    for name in BILLING_REQUIRED:
        assert table.column(name).null_count == 0, name
    table = table.cast(BILLING_SCHEMA)
    assert table.schema == BILLING_SCHEMA
    return table


def _sums(table: pa.Table, key: str, value: str) -> dict:
    con = connect()
    con.register("t", table)
    return dict(con.execute(f"SELECT {key}, sum({value}) FROM t GROUP BY 1").fetchall())


def test_round_trip_exact_totals(tmp_path: Path) -> None:
    _, conn, ctx = _written(tmp_path)
    out = _run(conn, ctx)
    src = _lines()
    # 7 export rows (5 usage, a refund, tax) + 4 credits nested into their usage rows.
    assert out.num_rows == 11
    want: dict[str, D] = {}
    for r in src.to_pylist():
        cat = {"usage": "Usage", "tax": "Tax", "credit": "Credit", "refund": "Credit"}[r["kind"]]
        want[cat] = want.get(cat, D(0)) + r["cost"]
    assert _sums(out, "ChargeCategory", "BilledCost") == want
    usage_qty = sum(r["quantity"] for r in src.to_pylist() if r["kind"] == "usage")
    assert _sums(out, "ChargeCategory", "ConsumedQuantity")["Usage"] == usage_qty
    assert _sums(out, "ChargeCategory", "PricingQuantity")["Usage"] == usage_qty
    rows = out.to_pylist()
    u2 = next(r for r in rows if r["BilledCost"] == D("1234.567890123"))
    assert (u2["x_SkuKey"], u2["RegionId"], u2["ConsumedUnit"], u2["PricingUnit"]) == (
        OUT_MAV, "europe-west4", "count", "count")  # fmt: skip
    assert u2["ServiceName"] == "Vertex AI" and u2["ServiceCategory"] == "AI and Machine Learning"
    assert u2["ProviderName"] == u2["PublisherName"] == u2["InvoiceIssuerName"] == "Google Cloud"
    tax = next(r for r in rows if r["ChargeCategory"] == "Tax")
    assert tax["x_SkuKey"] == "Tax" and tax["ConsumedQuantity"] is None
    credits = [r for r in rows if r["x_NativeLineId"].split(":")[-2:-1] == ["credit"]]
    assert sorted(r["BilledCost"] for r in credits) == sorted(
        r["cost"] for r in src.to_pylist() if r["kind"] == "credit"
    )
    assert all(r["x_SkuKey"] in (IN_70B, OUT_MAV) and r["ConsumedQuantity"] is None
               for r in credits)  # fmt: skip
    assert {r["BillingPeriodStart"] for r in rows} == {P.start}
    assert {r["BillingPeriodEnd"] for r in rows} == {P.end}
    assert {r["x_PartnerId"] for r in rows} == {"gcp"}
    assert {r["x_SnapshotId"] for r in rows} == {"snap-1"}


def test_late_rows_stay_in_invoice_month_and_other_month_excluded(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    out = _run(conn, ctx).to_pylist()
    late = [r for r in out if r["ChargePeriodStart"] < P.start]
    assert sorted(r["BilledCost"] for r in late) == [D("-0.314159265358"), D("3.141592653589")]
    # June's partition is on disk beside May's; neither locate nor normalize reaches it.
    assert all("invoice_month=202505/" in f for f in ctx.files if f.endswith(".gz"))
    june = _run(conn, _ctx(root, conn, P.next())).to_pylist()
    assert len(june) == 9 and min(r["ChargePeriodStart"] for r in june) >= P.next().start
    # The filter is invoice.month, not the partition: give May's reader June's file too.
    both = NormalizeContext(
        "gcp",
        P,
        "s",
        root,
        tuple(
            sorted(
                ctx.files + tuple(f for f in _ctx(root, conn, P.next()).files if f.endswith(".gz"))
            )
        ),
    )
    assert len(_run(conn, both)) == len(out)


def test_lineage_row_is_the_files_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "ROWS_PER_FILE", 3)  # shard, so rows restart in each file
    root, conn, ctx = _written(tmp_path)
    data = [f for f in ctx.files if f.endswith(".json.gz")]
    assert [f.rsplit("-", 1)[1] for f in data] == [
        "000000000000.json.gz", "000000000001.json.gz", "000000000002.json.gz"]  # fmt: skip
    out = _run(conn, ctx).to_pylist()
    assert len({r["x_NativeLineId"] for r in out}) == len(out)
    lines = {f: gzip.decompress((root / f).read_bytes()).decode().splitlines() for f in data}
    for r in out:
        native = json.loads(lines[r["x_SourceFile"]][r["x_SourceRow"] - 1], parse_float=D)
        parts = r["x_NativeLineId"].split(":")
        assert parts[:2] == [r["x_SourceFile"], str(r["x_SourceRow"])]
        if len(parts) == 4:  # file:row:credit:n
            assert D(native["credits"][int(parts[3]) - 1]["amount"]) == r["BilledCost"]
        else:
            assert D(native["cost"]) == r["BilledCost"]
        assert native["invoice"]["month"] == "202505"
        assert (native["sku"]["description"] or "") == r["x_SkuKey"]


def test_writer_layout_schema_and_determinism(tmp_path: Path) -> None:
    a = writer.write(_lines(), P, tmp_path / "a", table=TABLE)
    b = writer.write(_lines(), P, tmp_path / "b", table=TABLE, version=2)
    assert [p.relative_to(tmp_path / "a").as_posix() for p in a] == [
        f"{TABLE}/schema.json",
        f"{TABLE}/invoice_month=202505/{TABLE}-000000000000.json.gz",
    ]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    schema = json.loads(a[0].read_text())
    assert [f["name"] for f in schema][:5] == [
        "billing_account_id",
        "service",
        "sku",
        "usage_start_time",
        "usage_end_time",
    ]
    columns_spec(schema)  # the connector accepts the schema the writer declares
    first = json.loads(gzip.decompress(a[1].read_bytes()).splitlines()[0])
    assert set(first) == {f["name"] for f in schema}  # every row carries every column
    assert first["usage_start_time"].endswith(" UTC") and first["currency_conversion_rate"] == 1
    orphans = _lines().filter(pa.array([r != "u2" for r in _lines()["line_id"].to_pylist()]))
    with pytest.raises(ValueError, match="without a usage parent"):
        writer.write(orphans, P, tmp_path / "c", table=TABLE)
    with pytest.raises(ValueError, match="another month"):
        writer.write(_lines(), P.next(), tmp_path / "d", table=TABLE)
    with pytest.raises(ValueError, match="table name"):
        writer.write(_lines(), P, tmp_path / "e", table="bad-name")


# -- bad input ----------------------------------------------------------------------------


def _data_file(root: Path, ctx: NormalizeContext) -> Path:
    return root / next(f for f in ctx.files if f.endswith(".json.gz"))


def _edit(path: Path, line: int, edit) -> None:
    rows = gzip.decompress(path.read_bytes()).decode().split("\n")
    rows[line - 1] = edit(rows[line - 1])
    path.write_bytes(gzip.compress("\n".join(rows).encode()))


def _raises(conn: GcpBillingConnector, ctx: NormalizeContext, match: str) -> SourceError:
    with pytest.raises(SourceError, match=match) as exc:
        conn.normalize_sql(ctx)
    return exc.value


def test_truncated_gzip(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = _raises(conn, ctx, "truncated")
    assert err.file == path.relative_to(root).as_posix() and err.file in str(err)


def test_gzip_cut_at_a_flush_point(tmp_path: Path) -> None:
    # DuckDB reads such a stream without complaint and silently loses the rest.
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    text = gzip.decompress(path.read_bytes())
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.write_bytes(z.compress(text[: text.index(b"\n") + 1]) + z.flush(zlib.Z_SYNC_FLUSH))
    _raises(conn, ctx, "truncated")


def test_damaged_gzip_stream(tmp_path: Path) -> None:
    # A flipped byte inside the deflate data: the decompressor's own error, not a CRC's.
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    err = _raises(conn, ctx, "corrupt or truncated gzip")
    assert err.file == path.relative_to(root).as_posix()


def test_not_gzip(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    _data_file(root, ctx).write_text('{"cost": 1}\n')
    _raises(conn, ctx, "gzip")


def test_text_in_cost_names_file_row_column(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    _edit(path, 3, lambda s: json.dumps({**json.loads(s), "cost": "12.5 USD"}))
    err = _raises(conn, ctx, "bad value")
    assert (err.file, err.row, err.column) == (path.relative_to(root).as_posix(), 3, "cost")


def test_text_in_credit_amount(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    rows = gzip.decompress(path.read_bytes()).decode().splitlines()
    n = next(i for i, s in enumerate(rows, 1) if json.loads(s)["credits"])

    def spoil(s: str) -> str:
        row = json.loads(s)
        row["credits"][0]["amount"] = "n/a"
        return json.dumps(row)

    _edit(path, n, spoil)
    err = _raises(conn, ctx, "bad value")
    assert (err.row, err.column) == (n, "credits.amount")


def test_malformed_json_line(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    _edit(path, 5, lambda s: s[:40])  # a record cut mid-way
    err = _raises(conn, ctx, "unreadable")
    assert (err.file, err.row) == (path.relative_to(root).as_posix(), 5)


def test_wrong_type_in_record(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    _edit(path, 4, lambda s: json.dumps({**json.loads(s), "invoice": "202505"}))
    err = _raises(conn, ctx, "unreadable")
    assert err.row == 4


def test_blank_line_refused(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    path = _data_file(root, ctx)
    _edit(path, 2, lambda s: "\n" + s)
    _raises(conn, ctx, "blank line")


def test_missing_schema_json(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    (root / TABLE / "schema.json").unlink()
    with pytest.raises(SourceError, match=r"schema\.json missing"):
        conn.locate(P)
    no_schema = NormalizeContext("gcp", P, "s", root, tuple(f for f in ctx.files
                                                             if f.endswith(".gz")))  # fmt: skip
    _raises(conn, no_schema, "schema.json")


def test_wrong_format_schema_rejected(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    # A FOCUS export table's schema: a different product, not the standard usage cost table.
    focus = [{"name": n, "type": "STRING", "mode": "NULLABLE"}
             for n in ("BilledCost", "BillingCurrency", "ChargeCategory")]  # fmt: skip
    (root / TABLE / "schema.json").write_text(json.dumps(focus))
    _raises(conn, ctx, "not the standard Cloud Billing usage cost export")
    (root / TABLE / "schema.json").write_text("{not json")
    _raises(conn, ctx, "cannot read schema.json")


def test_locate_errors_and_settings(tmp_path: Path) -> None:
    root, conn, _ = _written(tmp_path)
    with pytest.raises(SourceError, match="no export files for invoice month 202507"):
        conn.locate(Period(2025, 7))
    shard = root / TABLE / "invoice_month=202505" / f"{TABLE}-000000000002.json.gz"
    shard.write_bytes(b"")
    with pytest.raises(SourceError, match="shards not numbered"):
        conn.locate(P)
    for bad in ("gcp-billing", "x;DROP", ""):
        with pytest.raises(pydantic.ValidationError):
            GcpBillingSettings(type="gcp_billing", path="p", table=bad)
    with pytest.raises(pydantic.ValidationError):
        GcpBillingSettings(type="gcp_billing", path="p", table="t", project="Bad_Project")
    assert GcpBillingConnector.capabilities.restates and GcpBillingConnector.capabilities.pushdown
    assert datetime(2025, 5, 1, tzinfo=UTC) == P.start


def test_number_parsing_fast_paths_are_exact() -> None:
    from connectors.gcp_billing.helpers import _dec

    texts = ["0.0000000000005", "-0.0000000000005", "999999.9999999999995", "1e-07", "1E+3",
             "-0.0", "1234567.0", "9007199254740993.0", "12345678901234567890.0", "0.1",
             "0.30000000000000004", "-123456.789012345678", "1073537296.0", "5"]  # fmt: skip
    con = connect()
    got = con.execute(
        f"SELECT {_dec('t')}, CAST(t AS DECIMAL(38,12)) FROM unnest(?::VARCHAR[]) u(t)", [texts]
    ).fetchall()
    assert [a for a, _ in got] == [b for _, b in got]
    bad = con.execute(f"SELECT {_dec('t', 'TRY_CAST')} FROM unnest(?::VARCHAR[]) u(t)",
                      [['"12.5"', "abc", '"1.0"', "true"]]).fetchall()  # fmt: skip
    assert bad == [(None,)] * 4


# -- BigQuery mode: settings, the query, and staying local when not selected ------------------


def test_mode_is_chosen_by_project_and_dataset(tmp_path: Path) -> None:
    local = GcpBillingSettings(type="gcp_billing", path="p", table=TABLE)
    remote = GcpBillingSettings(
        type="gcp_billing",
        table=TABLE,
        project="my-billing-project",
        dataset="billing_export",
        api_endpoint="http://127.0.0.1:9050/",
    )
    assert not local.remote and remote.remote and remote.emulator
    assert remote.api_endpoint == "http://127.0.0.1:9050"
    private = remote.model_copy(update={"api_endpoint": "https://bq.example.com"})
    assert not private.emulator
    for bad in (
        {"path": "p", "project": "my-billing-project"},  # project without dataset
        {"path": "p", "dataset": "billing_export"},  # dataset without project
        {},  # neither a folder nor a table
        {"project": "my-billing-project", "dataset": "d", "location": "us central"},
        {"project": "my-billing-project", "dataset": "d", "api_endpoint": "http://u:pw@h:1"},
        {"project": "my-billing-project", "dataset": "d", "job_project": "X"},
    ):
        with pytest.raises(pydantic.ValidationError):
            GcpBillingSettings(type="gcp_billing", table=TABLE, **bad)
    # Local settings: fetch is locate, and nothing of the SDK is needed.
    _, conn, _ = _written(tmp_path)
    assert conn.fetch(P, tmp_path / "staging") == conn.locate(P)
    assert not (tmp_path / "staging").exists()
    remote_conn = GcpBillingConnector(remote, data_dir=tmp_path, source_name="gcp/billing")
    with pytest.raises(SourceError, match="BigQuery table: pull it with fetch"):
        remote_conn.locate(P)


def test_import_does_not_load_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys, connectors, connectors.gcp_billing; "
            "print(any(m.startswith('google.cloud.bigquery') for m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_export_query_is_parameterized_and_pruned() -> None:
    from connectors.gcp_billing import query

    ref = query.table_ref("my-billing-project", "billing_export", TABLE)
    assert ref == f"`my-billing-project.billing_export.{TABLE}`"
    project = "my-billing-project"
    for parts in (("Bad", "d", "t"), (project, "d.x", "t"),
                  (project, "d", "t`; DROP TABLE x --"), (project, "d", "")):  # fmt: skip
        with pytest.raises(query.BadName):
            query.table_ref(*parts)

    ingest = query.export_query(ref, P, query.partitioning(None, True, None), 10)
    assert ingest.sql == (
        f"SELECT * FROM {ref} WHERE invoice.month = @invoice_month "
        "AND _PARTITIONTIME >= @window_start AND _PARTITIONTIME < @window_end"
    )
    assert [(p.name, p.type, p.value) for p in ingest.params] == [
        ("invoice_month", "STRING", "202505"),
        ("window_start", "TIMESTAMP", datetime(2025, 4, 21, tzinfo=UTC)),
        ("window_end", "TIMESTAMP", datetime(2025, 6, 11, tzinfo=UTC)),
    ]
    by_date = query.export_query(ref, P, query.partitioning("usage_date", True, "DATE"), 3)
    assert "usage_date >= @window_start AND usage_date < @window_end" in by_date.sql
    assert [p.value for p in by_date.params[1:]] == [date(2025, 4, 28), date(2025, 6, 4)]
    flat = query.export_query(ref, P, query.partitioning(None, False, None), 10)
    assert flat.sql.endswith("WHERE invoice.month = @invoice_month") and len(flat.params) == 1
    with pytest.raises(query.BadName):
        query.partitioning("cost", True, "FLOAT")


# -- pushdown (pushdown: true; the BigQuery side runs in tests/cloud/test_pushdown_bigquery.py) --


def test_pushdown_settings_and_lines_query() -> None:
    from connectors.gcp_billing import query

    bq = {"project": "my-billing-project", "dataset": "billing_export"}
    assert GcpBillingSettings(type="gcp_billing", table=TABLE, pushdown=True, **bq).pushdown
    with pytest.raises(pydantic.ValidationError, match="pushdown needs BigQuery"):
        GcpBillingSettings(type="gcp_billing", table=TABLE, path="p", pushdown=True)
    ref = query.table_ref(bq["project"], bq["dataset"], TABLE)
    flat = query.partitioning(None, False, None)
    q = query.lines_query(ref, P, flat, 10, ("gcp:tax", IN_70B))
    # x_SkuKey is the SKU description, or gcp:<cost_type> for a row without one.
    assert q.sql.endswith(
        "AND (sku.description IN (@sku_0, @sku_1) "
        "OR (sku.description IS NULL AND cost_type IN (@cost_type_0)))"
    )
    assert [(p.name, p.value) for p in q.params[1:]] == [
        ("sku_0", "gcp:tax"), ("sku_1", IN_70B), ("cost_type_0", "tax")
    ]  # fmt: skip
    none = query.lines_query(ref, P, flat, 10, (IN_70B,))
    assert "cost_type IN (@cost_type_0)" in none.sql and none.params[-1].value == ""


def _grain_row(**kw: object) -> dict:
    keys = {"billing_account_id": "01A2B3-C4D5E6-F7A8B9", "service_id": "S", "service_description":
            "Vertex AI", "sku_id": "K", "sku_description": IN_70B, "project_id": "p",
            "project_name": "P", "location_location": "us-central1", "location_region":
            "us-central1", "location_zone": None, "currency": "USD", "invoice_month": "202505",
            "cost_type": "regular", "adjustment_description": None, "usage_unit": "count",
            "usage_pricing_unit": "count", "transaction_type": "GOOGLE", "seller_name": None,
            "usage_day": date(2025, 5, 3), "credit_names": "Promo"}  # fmt: skip
    start = datetime(2025, 5, 3, 1, tzinfo=UTC)
    row = {"kind": "row", "usage_start_time": start, "usage_end_time": start + timedelta(hours=5),
           "export_time": start + timedelta(hours=9), "cost": "1234.567890123001",
           "cost_at_list": "1234.567890123001", "usage_amount": "1073537296.0000000000",
           "usage_amount_in_pricing_units": "1073537296", "line_count": 7, "credit_name": None,
           "credit_full_name": None, "credit_type": None, "credit_amount": None}  # fmt: skip
    return {**keys, **row, **kw}


def test_grain_result_is_laid_out_as_the_export(tmp_path: Path) -> None:
    """The flat grain result (as BigQuery returns it) nests back into export records: exact
    sums, credits under their group, LINE_COUNT as each record's weight, not schema drift."""
    from connectors.gcp_billing import grain, staging

    credit = _grain_row(kind="credit", usage_start_time=None, usage_end_time=None,
                        export_time=None, cost=None, cost_at_list=None, usage_amount=None,
                        usage_amount_in_pricing_units=None, line_count=None, credit_name="Promo",
                        credit_full_name="Promotion", credit_type="PROMOTION",
                        credit_amount="-0.000000000001")  # fmt: skip
    plain = _grain_row(credit_names="", cost="0.000000000001", line_count=2)
    spool = staging.spool_path(tmp_path)
    spool.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([_grain_row(), credit, plain]), spool)
    staged = staging.lay_out(tmp_path, TABLE, P, grain.grain_schema(writer.BQ_SCHEMA),
                             grain.nest_sql)  # fmt: skip
    assert staged.rows == 2 and not spool.exists()
    files = tuple(sorted(f.relpath for f in staged.files))
    settings = GcpBillingSettings(type="gcp_billing", path=str(tmp_path), table=TABLE)
    conn = GcpBillingConnector(settings, data_dir=tmp_path, source_name="gcp/billing")
    ctx = NormalizeContext("gcp", P, "snap", tmp_path, files)
    lines = connect().sql(conn.normalize_sql(ctx)).to_arrow_table().to_pylist()
    got = sorted((r["ChargeCategory"], r["BilledCost"], r["x_SourceRow"]) for r in lines)
    assert got == [("Credit", D("-0.000000000001"), 2), ("Usage", D("0.000000000001"), 1),
                   ("Usage", D("1234.567890123001"), 2)]  # fmt: skip
    assert {r["PricingQuantity"] for r in lines} == {D(1073537296), None}
    weights = connect().sql(conn.line_weights_sql(ctx)).fetchall()
    assert sorted(weights) == [(files[0], 1, 2), (files[0], 2, 7)]
    (rel,) = conn.native_relations(ctx)
    assert "LINE_COUNT" not in connect().sql(rel.sql).columns
    assert grain.is_grain_schema(json.loads((tmp_path / files[1]).read_text()))
