"""The catalogue of bad inputs: each one, planted in a generated month, yields its exact
quarantine reason (check, column, file) — or, for the tolerated ones, a warning — and the
stages run as the flow runs them (extract, native suite, normalize, canonical suite).

Stage-level and without Prefect, so the whole catalogue runs in seconds; the flow-level test
in ``test_flow_quality.py`` shows a quarantined source costs the other partners nothing.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connectors import build_connector
from connectors.base import NormalizeContext
from flows import validation
from flows.partner import _params
from revshare.config import load_config
from revshare.errors import SourceError
from revshare.generate import generate
from revshare.outcome import SourceOutcome
from revshare.periods import Period
from revshare.quality_config import load_quality_config
from revshare.runs import RunPaths
from revshare.stages import extract, normalize

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PERIOD = Period.parse("2026-10")


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("month") / "data"
    generate(load_config(REPO / "config"), PERIOD, out, rows=300)
    from expectations import adapter

    adapter._gx()  # pay the GX import once
    return out


@pytest.fixture()
def data(month: Path, tmp_path: Path) -> Path:
    shutil.copytree(month, tmp_path / "data")
    return tmp_path / "data"


@dataclass
class Result:
    outcome: SourceOutcome
    error: str | None

    @property
    def warnings(self) -> set[str]:
        v = self.outcome.validation
        return {c.check for c in v.warnings} if v else set()


def run_billing(data: Path, pid: str) -> Result:
    """One billing source through the flow's stages; the SourceError text is the reason the
    flow records (``SourceOutcome.reason``)."""
    config = load_config(REPO / "config")
    quality = load_quality_config(REPO / "config")
    source = config.partners[pid].billing
    so = SourceOutcome(pid, "billing", source.type)
    root = data.parent
    paths = RunPaths(root / "run")
    try:
        connector = build_connector(source, data, f"{pid}/billing")
        snap = extract(connector, PERIOD, root / "landing" / pid)
        ctx = NormalizeContext(pid, PERIOD, snap.id, snap.dir, snap.files)
        validation.check_native(so, connector, ctx, paths, quality, tasks=False)
        out = paths.canonical(pid, "billing")
        norm = normalize(connector, ctx, out, catalog=config.catalog.partners[pid])
        params = _params(pid, PERIOD, config, connector)
        validation.check_canonical(so, norm.path, params, paths, quality, tasks=False)
    except SourceError as exc:
        return Result(so, str(exc))
    return Result(so, None)


# --- file surgery -------------------------------------------------------------------------


def aws_part(data: Path) -> Path:
    return next((data / "aws").rglob("*-00001.snappy.parquet"))


def aws_manifest(data: Path) -> Path:
    return next((data / "aws").rglob("*-Manifest.json"))


def edit_aws(data: Path, fn: Callable[[pa.Table], pa.Table]) -> str:
    part = aws_part(data)
    pq.write_table(fn(pq.read_table(part)), part)
    return part.relative_to(data / "aws" / "cur2").as_posix()


def set_col(table: pa.Table, name: str, row: int, value: object) -> pa.Table:
    values = table[name].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def first_usage_row(table: pa.Table) -> int:
    kinds = table["line_item_line_item_type"].to_pylist()
    return kinds.index("Usage")


def azure_part(data: Path) -> Path:
    return next((data / "azure").rglob("part_*.csv.gz"))


def edit_azure(data: Path, fn: Callable[[bytes], bytes], *, fix_manifest: bool = True) -> str:
    """Rewrite the Azure blob; by default the manifest's byteCount follows, as if Azure had
    delivered these bytes (else the run is incomplete and never validated)."""
    part = azure_part(data)
    raw = fn(gzip.decompress(part.read_bytes()))
    part.write_bytes(gzip.compress(raw, mtime=0))
    if fix_manifest:
        manifest = part.parent / "manifest.json"
        doc = json.loads(manifest.read_text())
        doc["blobs"][0]["byteCount"] = doc["byteCount"] = part.stat().st_size
        manifest.write_text(json.dumps(doc))
    return part.relative_to(data / "azure" / "costexports").as_posix()


def csv_lines(fn: Callable[[list[str]], list[str]]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        return "\n".join(fn(raw.decode().split("\n"))).encode()

    return edit


def header_edit(fn: Callable[[list[str]], list[str]]) -> Callable[[bytes], bytes]:
    """Edit the header and, column for column, every row (drop, rename, add)."""

    def edit(lines: list[str]) -> list[str]:
        import csv
        import io

        rows = list(csv.reader(io.StringIO("\n".join(lines))))
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        names = fn(list(rows[0]))
        for r in rows:
            cells = dict(zip(rows[0], r, strict=True))
            w.writerow([cells.get(n, "x") if r is not rows[0] else n for n in names])
        return out.getvalue().rstrip("\n").split("\n")

    return csv_lines(edit)


def set_azure_cell(column: str, value: str, row: int = 1) -> Callable[[bytes], bytes]:
    import csv
    import io

    def edit(raw: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(raw.decode())))
        rows[row][rows[0].index(column)] = value
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return out.getvalue().encode()

    return edit


# --- the catalogue --------------------------------------------------------------------------


def test_clean_sources_pass_every_gate(data: Path) -> None:
    for pid in ("aws", "gcp", "azure", "snowflake"):
        res = run_billing(data, pid)
        assert res.error is None, res.error
        assert res.outcome.validation is not None and res.outcome.validation.success


def test_truncated_file(data: Path) -> None:
    # GCP delivers no manifest, so nothing upstream knows the size: the native suite's read
    # of the whole file is what refuses it.
    part = next((data / "gcp").rglob("*.json.gz"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    res = run_billing(data, "gcp")
    assert res.error is not None
    rel = part.relative_to(data / "gcp" / "billing_export").as_posix()
    assert f"readable in file {rel} errored (cannot read:" in res.error


def edit_gcp_start(data: Path, value: str) -> str:
    """Set the first record's usage_start_time in the first Cloud Billing file to ``value``."""
    part = next((data / "gcp").rglob("*.json.gz"))
    records = gzip.decompress(part.read_bytes()).decode().splitlines()
    first = json.loads(records[0])
    first["usage_start_time"] = value
    records[0] = json.dumps(first)
    part.write_bytes(gzip.compress("\n".join(records).encode() + b"\n", mtime=0))
    return part.relative_to(data / "gcp" / "billing_export").as_posix()


def test_unparseable_usage_start_time(data: Path) -> None:
    rel = edit_gcp_start(data, "sometime in October")
    res = run_billing(data, "gcp")
    assert res.error is not None
    assert f"date_usage_start_time(usage_start_time) in file {rel} 1 unexpected" in res.error


def test_iso_usage_start_time_is_read_like_bigquery_text(data: Path) -> None:
    # The check reads the column as normalization does: ISO text with an offset passes too.
    edit_gcp_start(data, "2026-10-03T04:00:00+00:00")
    assert run_billing(data, "gcp").error is None


def test_truncated_file_against_its_manifest(data: Path) -> None:
    # Azure's manifest promises byte counts: a cut blob makes the run incomplete at extract.
    edit_azure(data, lambda raw: raw[: len(raw) // 2], fix_manifest=False)
    res = run_billing(data, "azure")
    assert res.error is not None and "no complete export run" in res.error
    assert "has" in res.error and "manifest says" in res.error


def test_wrong_delimiter(data: Path) -> None:
    rel = edit_azure(data, csv_lines(lambda ls: [line.replace(",", ";") for line in ls]))
    res = run_billing(data, "azure")
    assert res.error is not None
    # One column, named after the whole ';'-joined header: every required column is missing.
    assert f"in file {rel} required MCA cost details column(s) missing or renamed: " in res.error
    assert "required_columns(billingCurrency, billingPeriodStartDate, " in res.error
    assert "costInBillingCurrency" in res.error


def test_bom_is_tolerated(data: Path) -> None:
    edit_azure(data, lambda raw: b"\xef\xbb\xbf" + raw)
    res = run_billing(data, "azure")
    assert res.error is None, res.error
    assert res.outcome.validation is not None and res.outcome.validation.success


def test_missing_column(data: Path) -> None:
    rel = edit_azure(data, header_edit(lambda h: [c for c in h if c != "costInBillingCurrency"]))
    res = run_billing(data, "azure")
    assert res.error is not None
    assert (
        f"required_columns(costInBillingCurrency) in file {rel} required MCA cost details "
        "column(s) missing or renamed: costInBillingCurrency"
    ) in res.error


def test_renamed_column(data: Path) -> None:
    rel = edit_azure(data, header_edit(lambda h: ["qty" if c == "quantity" else c for c in h]))
    res = run_billing(data, "azure")
    assert res.error is not None
    assert f"required_columns(quantity) in file {rel}" in res.error
    assert f"unknown_columns(qty) in file {rel}" in res.error  # and the new name is flagged


def test_extra_column_passes_with_a_warning(data: Path) -> None:
    edit_azure(data, header_edit(lambda h: [*h, "newMeterAttribute"]))
    res = run_billing(data, "azure")
    assert res.error is None, res.error
    assert res.warnings >= {"unknown_columns"}
    v = res.outcome.validation
    assert v is not None
    (w,) = [c for c in v.warnings if c.check == "unknown_columns"]
    assert w.column == "newMeterAttribute" and w.file and w.file.endswith(".csv.gz")


def test_text_in_a_numeric_column(data: Path) -> None:
    rel = edit_azure(data, set_azure_cell("quantity", "twelve"))
    res = run_billing(data, "azure")
    assert res.error is not None
    assert f"finite_quantity(quantity) in file {rel} 1 unexpected" in res.error
    assert "twelve" in res.error


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity(data: Path, value: float) -> None:
    rel = edit_aws(data, lambda t: set_col(t, "line_item_unblended_cost", 3, value))
    res = run_billing(data, "aws")
    assert res.error is not None
    assert (
        f"finite_line_item_unblended_cost(line_item_unblended_cost) in file {rel} 1 unexpected"
    ) in res.error


def test_negative_quantity(data: Path) -> None:
    rel = edit_aws(data, lambda t: set_col(t, "line_item_usage_amount", first_usage_row(t), -5.0))
    res = run_billing(data, "aws")
    assert res.error is not None
    assert f"non_negative_usage(line_item_usage_amount) in file {rel} 1 unexpected" in res.error


def test_refund_may_be_negative(data: Path) -> None:
    def refund(t: pa.Table) -> pa.Table:
        row = t["line_item_line_item_type"].to_pylist().index("Refund")
        return set_col(t, "line_item_usage_amount", row, -5.0)

    edit_aws(data, refund)
    assert run_billing(data, "aws").error is None


def test_dates_outside_the_period(data: Path) -> None:
    def shift(t: pa.Table) -> pa.Table:
        row = first_usage_row(t)
        start = t["line_item_usage_start_date"][row].as_py()
        return set_col(t, "line_item_usage_start_date", row, start - timedelta(days=40))

    edit_aws(data, shift)
    res = run_billing(data, "aws")
    assert res.error is not None
    assert "charge_in_window(ChargePeriodStart) 1 unexpected" in res.error


def test_late_rows_are_flagged_not_dropped(data: Path) -> None:
    def late(t: pa.Table) -> pa.Table:
        row = first_usage_row(t)
        start = t["line_item_usage_start_date"][row].as_py().replace(day=1)
        return set_col(t, "line_item_usage_start_date", row, start - timedelta(days=1))

    edit_aws(data, late)
    res = run_billing(data, "aws")
    assert res.error is None, res.error
    assert "late_rows" in res.warnings
    rows = pq.read_table(next((data.parent / "run").rglob("aws.billing.parquet")))
    assert rows.num_rows == pq.read_metadata(aws_part(data)).num_rows - 0  # nothing dropped


def test_same_file_delivered_twice(data: Path) -> None:
    part = aws_part(data)
    twin = part.with_name(part.name.replace("-00001.", "-00002."))
    shutil.copy(part, twin)
    manifest = aws_manifest(data)
    doc = json.loads(manifest.read_text())
    doc["dataFiles"].append(doc["dataFiles"][0].replace("-00001.", "-00002."))
    manifest.write_text(json.dumps(doc))
    res = run_billing(data, "aws")
    assert res.error is not None
    n = pq.read_metadata(part).num_rows
    assert f"unique_line_id(x_SnapshotId,x_NativeLineId) {n} unexpected" in res.error


def test_empty_export(data: Path) -> None:
    rel = edit_aws(data, lambda t: t.slice(0, 0))
    res = run_billing(data, "aws")
    assert res.error is not None
    assert f"not_empty in file {rel} the file holds no rows: 0 rows" in res.error


def test_unknown_currency_code(data: Path) -> None:
    part = next((data / "snowflake").rglob("USAGE_IN_CURRENCY_DAILY/*.parquet"))
    t = pq.read_table(part)
    xyz = pc.replace_substring(t["CURRENCY"], "USD", "XYZ")
    pq.write_table(t.set_column(t.schema.get_field_index("CURRENCY"), "CURRENCY", xyz), part)
    res = run_billing(data, "snowflake")
    rel = part.relative_to(data / "snowflake" / "usage").as_posix()
    assert res.error is not None
    assert f"currency_iso4217(CURRENCY) in file {rel}" in res.error and "XYZ" in res.error


def test_rows_tie_to_the_manifest(data: Path) -> None:
    edit_azure(data, csv_lines(lambda ls: [ls[0], *ls[2:]]))  # one row fewer, sizes re-promised
    res = run_billing(data, "azure")
    assert res.error is not None
    assert "rows_tie_to_manifest in file" in res.error
    assert "row count differs from the manifest's dataRowCount" in res.error


@pytest.mark.parametrize("content", ["", "{not json"])
def test_empty_or_corrupt_manifest(data: Path, content: str) -> None:
    aws_manifest(data).write_text(content)
    res = run_billing(data, "aws")
    assert res.error is not None and res.error.startswith("aws/billing:")
    assert "Manifest.json" in res.error
    part = azure_part(data)
    (part.parent / "manifest.json").write_text(content)
    res = run_billing(data, "azure")
    assert res.error is not None and "unreadable manifest" in res.error
