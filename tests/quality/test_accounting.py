"""No silent loss: for every source, rows read = rows normalized + rows rejected.

The core counts in DuckDB (``revshare.stages.account``) from the connector's own list of native
rows; here the rows read are counted a second, independent way (Parquet footers, the CSV and
JSON readers), so a connector that skipped a whole file or a row would be caught twice: by the
core's own check and by this count.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from connectors import build_connector
from connectors.base import NormalizeContext
from connectors.focus import FocusConnector
from revshare.config import SourceConfig, load_config
from revshare.errors import SourceError
from revshare.generate import generate
from revshare.outcome import RowAccounting, SourceOutcome
from revshare.periods import Period
from revshare.sqlutil import lit
from revshare.stages import extract, normalize

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "connectors"))
import test_standard_suite as suite  # noqa: E402  (the standard suite's native writers)

pytestmark = pytest.mark.integration
PERIOD = Period.parse("2026-10")
#: Snapshot files that carry no billing or statement lines: manifests, the BigQuery schema,
#: price lists. Every other landed file must be counted.
NOT_LINES = ("manifest.json", "-Manifest.json", "schema.json", "RATE_SHEET_DAILY", "list_prices")


def native_rows(path: Path) -> int:
    """Data rows of one native file, counted without the connector."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pq.ParquetFile(path).metadata.num_rows
    if name.endswith(".json.gz"):
        return gzip.decompress(path.read_bytes()).count(b"\n")
    if name.endswith(".json"):  # a statement: header object with a ``lines`` array
        return duckdb.sql(f"SELECT len(lines) FROM read_json({lit(path)})").fetchone()[0]
    if name.endswith(".xlsx"):
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True).worksheets[0]
        return sum(1 for r in sheet.iter_rows(values_only=True) if any(r)) - 1
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    return sum(1 for r in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if r) - 1


def read_independently(snap_dir: Path, files: tuple[str, ...]) -> int:
    return sum(native_rows(snap_dir / f) for f in files if not any(n in f for n in NOT_LINES))


def run(connector, period: Period, root: Path, tag: str = "x") -> tuple[RowAccounting, Path]:
    snap = extract(connector, period, root / "landing" / tag)
    ctx = NormalizeContext("p", period, snap.id, snap.dir, snap.files)
    norm = normalize(connector, ctx, root / "out" / f"{tag}.parquet")
    assert norm.accounting is not None, f"{connector.source_name} does not count its rows"
    acc = norm.accounting
    assert acc.read == acc.normalized + acc.rejected
    assert acc.read == read_independently(snap.dir, snap.files), acc
    assert acc.rejected == sum(n for _, n in acc.reasons)
    pairs = 'count(DISTINCT ("x_SourceFile", "x_SourceRow"))'
    distinct = duckdb.sql(f"SELECT {pairs} FROM read_parquet({lit(norm.path)})").fetchone()[0]
    assert acc.normalized == distinct
    return acc, norm.path


# -- every connector, on the standard suite's native input for two periods in one place --------

CASES = [
    suite.TestAwsCur2.case,
    suite.TestGcpBilling.case,
    suite.TestAzureCost.case,
    suite.TestSnowflakeUsage.case,
    suite.TestFocus.case,
    suite.TestStatementFiles.case,
    suite.TestOci.case,
    suite.TestDatabricks.case,
]


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_every_connector_accounts_for_every_row(case, tmp_path: Path) -> None:
    case.write(tmp_path, case.period)
    case.write(tmp_path, case.other_period)
    conn = build_connector(SourceConfig(type=case.type, **case.settings), tmp_path, "p/x")
    acc, _ = run(conn, case.period, tmp_path)
    assert acc.read > 0 and acc.normalized > 0
    if case.type in ("focus", "oci"):  # one folder, both months: the other month is rejected
        assert dict(acc.reasons) == {"other billing period": acc.rejected} and acc.rejected > 0


# -- the generated demo month, each partner's billing and statement ----------------------------


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("month") / "data"
    generate(load_config(REPO / "config"), PERIOD, out, rows=300)
    return out


@pytest.mark.parametrize("pid", ["aws", "gcp", "azure", "snowflake"])
@pytest.mark.parametrize("kind", ["billing", "statement"])
def test_demo_month_accounts_for_every_row(month: Path, tmp_path: Path, pid: str, kind: str):
    source = getattr(load_config(REPO / "config").partners[pid], kind)
    acc, _ = run(build_connector(source, month, f"{pid}/{kind}"), PERIOD, tmp_path)
    assert acc.normalized > 0
    if kind == "statement":
        assert acc.rejected == 0  # a statement line is normalized or the statement refused
    if pid == "snowflake" and kind == "billing":
        # The daily ai_services total is the Cortex rows' money again: rejected, with why.
        assert "ai_services daily total (priced from the Cortex rows)" in dict(acc.reasons)


# -- planted bad rows --------------------------------------------------------------------------


def test_planted_rows_of_another_period_are_rejected_and_counted(month: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(month, data)
    part = next((data / "aws").rglob("*-00001.snappy.parquet"))
    table = pq.read_table(part)
    stray = table.slice(0, 5)
    col = "bill_billing_period_start_date"
    moved = pc.add(
        stray[col],
        pa.scalar(31 * 86400 * 10**6, pa.duration("us")).cast(pa.duration(stray[col].type.unit)),
    )
    stray = stray.set_column(stray.schema.get_field_index(col), col, moved)
    pq.write_table(pa.concat_tables([table, stray]), part)
    source = load_config(REPO / "config").partners["aws"].billing
    acc, out = run(build_connector(source, data, "aws/billing"), PERIOD, tmp_path)
    assert ("other billing period", 5) in acc.reasons
    rows = pq.read_table(out, columns=["x_SourceFile", "x_SourceRow"])
    assert table.num_rows + 1 not in rows["x_SourceRow"].to_pylist()


def test_planted_rows_of_another_provider_are_rejected_and_counted(tmp_path: Path) -> None:
    case = suite.TestFocus.case
    case.write(tmp_path, case.period)
    sample = next((tmp_path / "focus").glob("*.csv"))
    raw = f"read_csv({lit(sample)}, all_varchar = true, nullstr = 'NULL')"
    (provider,) = duckdb.sql(f"SELECT DISTINCT ProviderName FROM {raw}").fetchone()
    src = SourceConfig(type="focus", **{**case.settings, "provider_name": provider})
    before, _ = run(build_connector(src, tmp_path, "p/focus"), case.period, tmp_path, "before")
    stray = tmp_path / "focus" / "stray.csv"
    duckdb.sql(
        f"COPY (SELECT * REPLACE ('Some Other Cloud' AS ProviderName) FROM {raw} "
        f"WHERE strftime(CAST(BillingPeriodStart AS TIMESTAMP), '%Y-%m') = '{case.period}' "
        f"LIMIT 4) TO {lit(stray)} (HEADER)"
    )
    acc, out = run(build_connector(src, tmp_path, "p/focus"), case.period, tmp_path, "after")
    assert acc.read == before.read + 4 and acc.normalized == before.normalized
    assert dict(acc.reasons)["other provider"] == dict(before.reasons).get("other provider", 0) + 4
    assert "stray.csv" not in set(pq.read_table(out)["x_SourceFile"].to_pylist())


class _LosesARow(FocusConnector):
    """A connector with a bug: its SQL quietly drops one native row."""

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        return f'SELECT * FROM ({super().normalize_sql(ctx)}) WHERE "x_SourceRow" <> 3'


def _landed_focus(
    tmp_path: Path, bug: type[FocusConnector]
) -> tuple[FocusConnector, NormalizeContext]:
    """The standard suite's FOCUS month, landed through a connector with ``bug``."""
    case = suite.TestFocus.case
    case.write(tmp_path, case.period)
    real = build_connector(SourceConfig(type="focus", **case.settings), tmp_path, "p/focus")
    conn = bug(real.settings, tmp_path, "p/focus")
    snap = extract(conn, case.period, tmp_path / "landing")
    return conn, NormalizeContext("p", case.period, snap.id, snap.dir, snap.files)


def test_a_silently_dropped_row_quarantines_the_source(tmp_path: Path) -> None:
    conn, ctx = _landed_focus(tmp_path, _LosesARow)
    out = tmp_path / "out.parquet"
    with pytest.raises(SourceError, match="rows do not add up"):
        normalize(conn, ctx, out)
    assert not out.exists(), "a source that lost rows publishes no canonical file"


class _NamesAStrayFile(FocusConnector):
    """A connector whose row list names a path outside its snapshot for one row."""

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        rows = super().row_accounting_sql(ctx)
        return (
            "SELECT CASE WHEN src_row = 3 THEN 'not/in/the/snapshot.csv' ELSE src_file END "
            f"AS src_file, src_row, reason FROM ({rows})"
        )


class _LosesAFileName(FocusConnector):
    """A connector whose SQL loses one line's file name."""

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        return (
            f'SELECT * REPLACE (CASE WHEN "x_SourceRow" = 3 THEN NULL ELSE "x_SourceFile" END '
            f'AS "x_SourceFile") FROM ({super().normalize_sql(ctx)})'
        )


@pytest.mark.parametrize("bug", [_NamesAStrayFile, _LosesAFileName])
def test_rows_keyed_by_path_hash_still_catch_a_wrong_file(tmp_path: Path, bug: type) -> None:
    """Files are matched on their path's hash only when that cannot mislead: a native row
    naming a path outside the snapshot sends the count back to the paths themselves, and a
    line without a file matches no native row."""
    conn, ctx = _landed_focus(tmp_path, bug)
    with pytest.raises(SourceError, match=r"1 canonical source row\(s\) match no kept native row"):
        normalize(conn, ctx, tmp_path / "out.parquet")


def test_outcome_carries_the_counts_for_run_json_ledger_and_report() -> None:
    so = SourceOutcome("aws", "billing", "aws_cur2")
    so.count(RowAccounting(10, 7, 3, (("other billing period", 3),)))
    row = so.ledger_row()
    assert (row["rows_read"], row["rows_normalized"], row["rows_rejected"]) == (10, 7, 3)
    assert row["rejected"] == [{"reason": "other billing period", "rows": 3}]
    assert so.accounting == "10 read = 7 normalized + 3 rejected (3 other billing period)"


def test_an_old_warehouse_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from revshare import ledger

    wh = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(wh))  # the ledger as it was before rows_* existed
    con.execute(
        "CREATE TABLE run_sources (run_id VARCHAR, partner VARCHAR, kind VARCHAR, "
        "source_type VARCHAR, snapshot_id VARCHAR, rows BIGINT, status VARCHAR, reason VARCHAR)"
    )
    con.execute("INSERT INTO run_sources VALUES ('old', 'aws', 'billing', 'aws_cur2', 's', 5, "
                "'ok', NULL)")  # fmt: skip
    con.close()
    so = SourceOutcome("aws", "billing", "aws_cur2", snapshot_id="s2", rows=7)
    so.count(RowAccounting(10, 7, 3, (("other billing period", 3),)))
    now = datetime.now(UTC)
    run_row = {"run_id": "new", "period": "2026-10", "partners": ["aws"], "started_at": now,
               "finished_at": now, "status": "completed", "report_path": "r"}  # fmt: skip
    ledger.record_run(wh, run_row, [so.ledger_row()], {})
    con = duckdb.connect(str(wh), read_only=True)
    got = con.execute(
        "SELECT run_id, rows, rows_read, rows_normalized, rows_rejected FROM run_sources "
        "ORDER BY run_id"
    ).fetchall()
    assert got == [("new", 7, 10, 7, 3), ("old", 5, None, None, None)]


def test_hashed_file_keys_flag_what_they_cannot_vouch_for(tmp_path: Path) -> None:
    from revshare.stages import _accounting_sql

    canon = tmp_path / "c.parquet"
    duckdb.sql(f"COPY (SELECT 'a.csv' AS x_SourceFile, 1 AS x_SourceRow) TO '{canon}'")
    acc = (
        "SELECT * FROM (VALUES ('a.csv', 1, NULL), ('b.csv', 1, NULL)) t(src_file, src_row, reason)"
    )
    con = duckdb.connect()
    counts = con.execute(_accounting_sql(acc, canon, hashed=True), [["a.csv", "b.csv"]]).fetchone()
    assert counts == (2, 0, 1, 1, None, False)
    assert con.execute(_accounting_sql(acc, canon, hashed=False)).fetchone() == counts
    # b.csv is not among the names; two names with one hash (here: the same name twice).
    for names in (["a.csv"], ["a.csv", "a.csv", "b.csv"]):
        assert con.execute(_accounting_sql(acc, canon, hashed=True), [names]).fetchone()[-1]
