"""Azure cost details: generator writer -> export folders -> connector -> canonical rows."""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connectors.azure_cost import AzureCostConnector, AzureCostSettings, helpers
from connectors.base import NormalizeContext, SourceError
from revshare.generate import azure
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.schema import BILLING_SCHEMA
from revshare.stages import normalize

pytestmark = pytest.mark.integration

PERIOD = Period(2026, 8)
EXPORT = "revshare-foundry"
EA_SAMPLE = Path("/work/shared/data/azure/ea_cost_details_sample.csv")
CATEGORY = {"usage": "Usage", "refund": "Credit", "credit": "Credit"}


def _line(n: int, *, kind: str = "usage", cur: str = "USD", cost: str = "1.234567890123",
          bp: str = "2026-08", day: int = 3, licensed: bool = True, parent: str | None = None,
          sku: str = "Llama-3.3-70B-Instruct Input Tokens") -> dict:  # fmt: skip
    return {
        "line_id": f"az-{n}", "partner": "azure", "account_id": f"bp-{cur.lower()}",
        "account_name": f"Contoso {cur}", "currency": cur,
        "usage_start": datetime(2026, 8, day, tzinfo=UTC),
        "usage_end": datetime(2026, 8, day, 1, tzinfo=UTC), "billing_period": bp,
        "region": "eastus" if cur == "USD" else "swedencentral", "kind": kind,
        "licensed": licensed, "service": "Foundry Models", "sku_key": sku,
        "sku_id": f"meter-{sku[:8]}", "quantity": D("1234.567"), "unit_price": D("0.00071"),
        "cost": D(cost), "credits": None, "credit_price": None, "parent_line_id": parent,
    }  # fmt: skip


def _lines() -> pa.Table:
    rows = [
        _line(1),
        _line(2, cost="0.000000000001", sku="Llama-3.3-70B-Instruct Output Tokens"),
        _line(3, cur="EUR", cost="2.5", day=5),
        _line(4, cur="EUR", cost="10.123456789012", day=31),
        _line(5, kind="refund", cost="-0.5", parent="az-1"),
        _line(6, kind="credit", cur="EUR", cost="-1.000000000007", parent="az-3"),
        _line(7, kind="tax", cost="0.25"),  # cost details are pre-tax: not written
        _line(8, bp="2026-09", cost="99"),  # late row billed next month: filtered out
        _line(9, licensed=False, cost="3.3", sku="gpt-4o-mini-0718 Inp glbl Tokens"),
    ]
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


def _connector(root: Path) -> AzureCostConnector:
    settings = AzureCostSettings(type="azure_cost", path=str(root), export_name=EXPORT)
    return AzureCostConnector(settings, root.parent, "azure/billing")


def _run(conn: AzureCostConnector, snapshot_dir: Path, files: tuple[str, ...],
         period: Period = PERIOD) -> pa.Table:  # fmt: skip
    ctx = NormalizeContext("azure", period, "snap-1", snapshot_dir, tuple(sorted(files)))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(conn.normalize_sql(ctx)).to_arrow_table()


def _locate_and_run(root: Path) -> tuple[pa.Table, object]:
    conn = _connector(root)
    delivery = conn.locate(PERIOD)
    return _run(conn, root, tuple(f.relpath for f in delivery.files)), delivery


def _names_types(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


def _totals(out: pa.Table) -> dict[tuple[str, str], D]:
    rows = duckdb.sql(
        "SELECT ChargeCategory, BillingCurrency, sum(BilledCost) FROM out GROUP BY ALL"
    ).fetchall()
    return {(c, cur): total for c, cur, total in rows}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_round_trip_exact_totals_and_lineage(tmp_path: Path) -> None:
    lines = _lines()
    written = azure.write(lines, PERIOD, tmp_path, export_name=EXPORT)
    header = _csv_rows(written[0])[0].keys()
    assert list(header) == list(azure.MCA_COLUMNS) and len(azure.MCA_COLUMNS) == 65

    out, delivery = _locate_and_run(tmp_path)
    assert _names_types(out.schema) == _names_types(BILLING_SCHEMA)
    expected: dict[tuple[str, str], D] = defaultdict(D)
    for r in lines.to_pylist():
        if r["kind"] != "tax" and r["billing_period"] == "2026-08":
            expected[(CATEGORY[r["kind"]], r["currency"])] += r["cost"]
    assert out.num_rows == 7
    assert _totals(out) == dict(expected)

    rows = out.to_pylist()
    manifest = json.loads(written[-1].read_text())
    assert delivery.version == manifest["runInfo"]["runId"]
    assert "skippedIncompleteRuns" not in delivery.metadata
    assert {r["BillingPeriodStart"] for r in rows} == {PERIOD.start}
    assert {r["BillingPeriodEnd"] for r in rows} == {PERIOD.end}
    assert {r["x_SkuKey"] for r in rows} >= {"Llama-3.3-70B-Instruct Input Tokens"}
    assert len({r["x_NativeLineId"] for r in rows}) == len(rows)
    by_cur = {r["BillingCurrency"]: r for r in rows if r["ChargeCategory"] == "Usage"}
    assert by_cur["EUR"]["PricingCurrency"] == "USD"
    assert by_cur["EUR"]["RegionId"] == "swedencentral"
    meta = [r for r in rows if r["x_SkuKey"].startswith("Llama")]
    assert {r["PublisherName"] for r in meta} == {"Meta"}
    assert {r["PricingUnit"] for r in rows} == {"1K"}
    # x_SourceRow N is data row N of the file it names.
    for r in rows:
        native = _csv_rows(tmp_path / r["x_SourceFile"])[r["x_SourceRow"] - 1]
        assert D(native["costInBillingCurrency"]) == r["BilledCost"]
        assert native["meterName"] == r["x_SkuKey"]
        assert (
            datetime.strptime(native["date"], "%m/%d/%Y").replace(tzinfo=UTC)
            == r["ChargePeriodStart"]
        )


def test_writer_is_deterministic_and_versions_run_later(tmp_path: Path) -> None:
    a = azure.write(_lines(), PERIOD, tmp_path / "a", export_name=EXPORT, version=2)
    b = azure.write(_lines(), PERIOD, tmp_path / "b", export_name=EXPORT, version=2)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    v1 = azure.run_identity(PERIOD, EXPORT, 1)
    v2 = azure.run_identity(PERIOD, EXPORT, 2)
    assert v2[0] > v1[0] and v2[1] != v1[1]


def test_multiple_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure, "ROWS_PER_PART", 3)
    written = azure.write(_lines(), PERIOD, tmp_path, export_name=EXPORT)
    manifest = json.loads(written[-1].read_text())
    assert manifest["blobCount"] == 3 and manifest["dataRowCount"] == 8
    assert [b["dataRowCount"] for b in manifest["blobs"]] == [3, 3, 2]
    out, _ = _locate_and_run(tmp_path)
    assert out.num_rows == 7
    for r in out.to_pylist():
        native = _csv_rows(tmp_path / r["x_SourceFile"])[r["x_SourceRow"] - 1]
        assert D(native["costInBillingCurrency"]) == r["BilledCost"]


@pytest.mark.parametrize("damage", ["missing", "size"])
def test_newest_complete_run_wins(tmp_path: Path, damage: str) -> None:
    lines = _lines()
    azure.write(lines, PERIOD, tmp_path, export_name=EXPORT, version=1)
    v2 = azure.write(lines.slice(0, 4), PERIOD, tmp_path, export_name=EXPORT, version=2)
    v3 = azure.write(lines, PERIOD, tmp_path, export_name=EXPORT, version=3)
    if damage == "missing":
        v3[0].unlink()
    else:
        v3[0].write_bytes(v3[0].read_bytes()[:-5])  # a blob still being uploaded
    out, delivery = _locate_and_run(tmp_path)
    assert delivery.version == json.loads(v2[-1].read_text())["runInfo"]["runId"]
    assert out.num_rows == 4
    skipped = delivery.metadata["skippedIncompleteRuns"]
    assert v3[0].parent.name in skipped
    assert ("blob missing" if damage == "missing" else "bytes") in skipped


def test_no_complete_run_is_an_error(tmp_path: Path) -> None:
    v1 = azure.write(_lines(), PERIOD, tmp_path, export_name=EXPORT)
    v1[0].unlink()
    with pytest.raises(SourceError, match="no complete export run"):
        _connector(tmp_path).locate(PERIOD)


def test_both_folder_depths(tmp_path: Path) -> None:
    lines = _lines()
    azure.write(lines, PERIOD, tmp_path, export_name=EXPORT, version=1)
    v2 = azure.write(lines.slice(0, 2), PERIOD, tmp_path, export_name=EXPORT, version=2)
    # Re-lay run 2 as Microsoft's documented RUN/ depth: <daterange>/<runId>/...
    run_id = json.loads(v2[-1].read_text())["runInfo"]["runId"]
    guid_dir, time_dir = v2[-1].parent, v2[-1].parent.parent
    shutil.move(guid_dir, time_dir.parent / run_id)
    time_dir.rmdir()
    out, delivery = _locate_and_run(tmp_path)
    assert delivery.version == run_id and delivery.metadata["run"].endswith(run_id)
    assert out.num_rows == 2
    # ... and the deeper EXPORTTIME/GUID/ run is still found when it is the newest.
    azure.write(lines, PERIOD, tmp_path, export_name=EXPORT, version=3)
    out, delivery = _locate_and_run(tmp_path)
    assert out.num_rows == 7 and delivery.metadata["runsComplete"] == "3"


def test_ea_sample_normalizes(tmp_path: Path) -> None:
    shutil.copy(EA_SAMPLE, tmp_path / "ea.csv")
    conn = _connector(tmp_path)
    out = _run(conn, tmp_path, ("ea.csv",), Period(2023, 9))
    assert _names_types(out.schema) == _names_types(BILLING_SCHEMA)
    native = _csv_rows(EA_SAMPLE)
    assert out.num_rows == len(native) == 27
    # Two sample costs (6.65679E-09, 6.19947E-09) carry 14 places: the canonical scale is 12,
    # and the cast rounds half away from zero at the 12th place.
    total = sum(D(r["CostInBillingCurrency"]).quantize(D("1e-12"), ROUND_HALF_UP) for r in native)
    assert total == D("1.261369265057")
    assert _totals(out) == {("Usage", "CAD"): total}
    assert {r["BillingCurrency"] for r in out.to_pylist()} == {"CAD"}
    assert [r["x_SourceRow"] for r in out.to_pylist()] == list(range(1, 28))
    assert out.column("x_SkuKey").null_count == 0
    assert _run(conn, tmp_path, ("ea.csv",), Period(2023, 10)).num_rows == 0


def test_older_ea_header(tmp_path: Path) -> None:
    header = ["AccountName", "SubscriptionId", "Date", "Product", "MeterCategory", "MeterId",
              "MeterName", "UnitOfMeasure", "Quantity", "Cost", "BillingCurrency", "ChargeType",
              "BillingAccountId", "BillingPeriodStartDate", "BillingPeriodEndDate",
              "ResourceLocation"]  # fmt: skip
    rows = [
        ["a", "s", "08/02/2026", "Llama", "Foundry Models", "m1", "Llama-3.3-70B-Instruct "
         "Input Tokens", "1K", "10", "0.123456789012", "EUR", "Usage", "123", "08/01/2026",
         "08/31/2026", "westeurope"],
        ["a", "s", "08/03/2026", "Llama", "Foundry Models", "m1", "x", "1K", "1", "-0.5",
         "EUR", "Refund", "123", "08/01/2026", "08/31/2026", "westeurope"],
    ]  # fmt: skip
    with open(tmp_path / "old.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    out = _run(_connector(tmp_path), tmp_path, ("old.csv",))
    assert _totals(out) == {("Usage", "EUR"): D("0.123456789012"), ("Credit", "EUR"): D("-0.5")}


def _rewrite(src: Path, dst: Path, *, drop: str | None = None,
             set_cell: tuple[int, str, str] | None = None) -> None:  # fmt: skip
    rows = _csv_rows(src)
    fields = [c for c in rows[0] if c != drop]
    if set_cell:
        n, col, value = set_cell
        rows[n - 1][col] = value
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_missing_required_column_names_column_and_file(tmp_path: Path) -> None:
    written = azure.write(_lines(), PERIOD, tmp_path / "x", export_name=EXPORT)
    _rewrite(written[0], tmp_path / "mca.csv", drop="chargeType")
    _rewrite(EA_SAMPLE, tmp_path / "ea.csv", drop="MeterName")
    conn = _connector(tmp_path)
    with pytest.raises(SourceError) as e:
        _run(conn, tmp_path, ("mca.csv",))
    assert e.value.column == "chargeType" and e.value.file == "mca.csv"
    assert "MCA cost details" in str(e.value)
    with pytest.raises(SourceError) as e:
        _run(conn, tmp_path, ("ea.csv",), Period(2023, 9))
    assert e.value.column == "MeterName" and e.value.file == "ea.csv"
    assert "EA cost details" in str(e.value)


@pytest.mark.parametrize("field", helpers.NUMERIC)
def test_text_in_numeric_column_names_file_row_column(tmp_path: Path, field: str) -> None:
    """Most money columns are checked by the canonical SELECT's own casts, and row by row only
    when it fails (``diagnose``): each must still come back as file, row and column."""
    column = helpers.LAYOUTS["mca"][field]
    written = azure.write(_lines(), PERIOD, tmp_path / "x", export_name=EXPORT)
    _rewrite(written[0], tmp_path / "bad.csv", set_cell=(4, column, "12,5 K"))
    ctx = NormalizeContext("azure", PERIOD, "snap-1", tmp_path, ("bad.csv",))
    with pytest.raises(SourceError) as e:
        normalize(_connector(tmp_path), ctx, tmp_path / "out.parquet")
    assert (e.value.file, e.value.row, e.value.column) == ("bad.csv", 4, column)
    assert "not a decimal number" in str(e.value)
    assert not (tmp_path / "out.parquet").exists()


def test_text_in_money_of_another_period_is_left_with_its_row(tmp_path: Path) -> None:
    """A row of another billing period never becomes a line (the row accounting rejects it
    with that reason), so its figures are not parsed and cannot stop the month."""
    written = azure.write(_lines(), PERIOD, tmp_path / "x", export_name=EXPORT)
    rows = _csv_rows(written[0])
    late = next(i for i, r in enumerate(rows, 1) if r["billingPeriodStartDate"] == "09/01/2026")
    _rewrite(written[0], tmp_path / "late.csv", set_cell=(late, "costInBillingCurrency", "n/a"))
    ctx = NormalizeContext("azure", PERIOD, "snap-1", tmp_path, ("late.csv",))
    out = normalize(_connector(tmp_path), ctx, tmp_path / "out.parquet")
    assert out.rows == 7 and out.accounting.rejected == 1


def test_unknown_header_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "focus.csv").write_text("BilledCost,BillingCurrency\n1,USD\n")
    with pytest.raises(SourceError, match="FOCUS export"):
        _run(_connector(tmp_path), tmp_path, ("focus.csv",))


def test_parquet_part_reads_like_csv(tmp_path: Path) -> None:
    written = azure.write(_lines(), PERIOD, tmp_path / "x", export_name=EXPORT)
    # Parquet exports carry typed columns: the sniffer types dates as DATE and money as DOUBLE.
    duckdb.execute(
        f"COPY (SELECT * FROM read_csv('{written[0]}', header = true)) "
        f"TO '{tmp_path / 'p.parquet'}' (FORMAT parquet)"
    )
    desc = duckdb.sql(f"DESCRIBE SELECT * FROM '{tmp_path / 'p.parquet'}'").fetchall()
    types = {r[0]: r[1] for r in desc}
    assert types["date"] == "DATE" and types["costInBillingCurrency"] == "DOUBLE"
    rel = written[0].relative_to(tmp_path / "x").as_posix()
    csv_out = _run(_connector(tmp_path), tmp_path / "x", (rel,))
    pq_out = _run(_connector(tmp_path), tmp_path, ("p.parquet",))
    assert pq_out.num_rows == csv_out.num_rows == 7
    assert _totals(pq_out) == _totals(csv_out)
    assert pq_out.column("x_SourceRow").to_pylist() == csv_out.column("x_SourceRow").to_pylist()


# -- remote-mode settings (the pull itself is tested against Azurite in tests/cloud) -----------


def _remote_settings(**kw: object) -> AzureCostSettings:
    base = {"type": "azure_cost", "path": "costexports", "export_name": EXPORT,
            "container": "billing-exports", "connection_string_env": "AZ_CONN"}  # fmt: skip
    return AzureCostSettings(**(base | kw))


@pytest.mark.parametrize(
    "container",
    ["ab", "a" * 64, "Billing", "billing--exports", "-billing", "billing-", "bill_ing", "$root"],
)
def test_container_names_follow_azure_rules(container: str) -> None:
    with pytest.raises(ValueError, match="not a valid Azure container name"):
        _remote_settings(container=container)


@pytest.mark.parametrize("container", ["abc", "a" * 63, "billing-exports-2026", "0cost"])
def test_valid_container_names(container: str) -> None:
    s = _remote_settings(container=container)
    assert s.remote and s.blob_root == "costexports/"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"connection_string_env": None}, "exactly one credential source"),
        ({"account_url": "https://acct.blob.core.windows.net", "sas_token_env": "AZ_SAS"},
         "exactly one credential source"),
        ({"connection_string_env": None, "account_url": "https://acct.blob.core.windows.net"},
         "go together"),
        ({"connection_string_env": None, "sas_token_env": "AZ_SAS"}, "exactly one"),
        ({"connection_string_env": None, "sas_token_env": "AZ_SAS",
          "account_url": "https://acct.blob.core.windows.net/?sv=x&sig=secret"}, "query"),
        ({"connection_string_env": "DefaultEndpointsProtocol=https;AccountKey=x"}, "NAME of an"),
        ({"path": "a/../b"}, "plain folder"),
        ({"container": None}, "need(s) container"),
    ],
)  # fmt: skip
def test_remote_settings_are_checked(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _remote_settings(**kw)


def test_sas_settings_and_root_folder() -> None:
    s = _remote_settings(connection_string_env=None, path="/",
                         account_url="https://acct.blob.core.windows.net/",
                         sas_token_env="AZ_SAS")  # fmt: skip
    assert s.account_url == "https://acct.blob.core.windows.net" and s.blob_root == ""


def test_local_fetch_is_locate_and_remote_locate_points_to_fetch(tmp_path: Path) -> None:
    azure.write(_lines(), PERIOD, tmp_path, export_name=EXPORT)
    conn = _connector(tmp_path)
    assert conn.fetch(PERIOD, tmp_path / "unused") == conn.locate(PERIOD)
    assert not (tmp_path / "unused").exists()
    remote = AzureCostConnector(_remote_settings(), tmp_path, "azure/billing")
    with pytest.raises(SourceError, match="use fetch"):
        remote.locate(PERIOD)


def test_manifest_blob_names_cannot_leave_the_run_folder(tmp_path: Path) -> None:
    written = azure.write(_lines(), PERIOD, tmp_path, export_name=EXPORT)
    doc = json.loads(written[-1].read_text())
    doc["blobs"][0]["blobName"] = doc["blobs"][0]["blobName"].replace(
        "part_0_0001", "../../../../escape/part_0_0001"
    )
    written[-1].write_text(json.dumps(doc))
    with pytest.raises(SourceError, match="unsafe blob name"):
        _connector(tmp_path).locate(PERIOD)
