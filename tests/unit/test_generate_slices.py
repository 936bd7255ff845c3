"""A month drawn in slices (``revshare.generate.slices``) is still a correct month: the real
flow finds every planted discrepancy with its amount and nothing else, the line counts are
what was asked, and the files really are split per slice. Small slices (7,000 lines of a
20,000-line month) stand in for the 250,000 of a 10M-line benchmark month."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from revshare.config import load_config
from revshare.generate import MIN_ROWS, generate, slices
from revshare.periods import Period

PERIOD = "2026-10"
REPO = Path(__file__).resolve().parents[2]
BILLING_PARTNERS = ["aws", "gcp", "azure", "snowflake"]
ROWS, SLICE = 20_000, 7_000


def _money(x: Decimal | None) -> str | None:
    return None if x is None else str(x.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _found(report: str) -> set[tuple]:
    t = pq.read_table(Path(report).parent / "results" / "discrepancies.parquet").to_pylist()
    return {
        (d["type"], d["partner"], d["model_id"], d["unit"], d["sku"], _money(d["amount"]))
        for d in t
        if d["partner"] in BILLING_PARTNERS
    }


def _expected(truth: dict, phases: set[str]) -> set[tuple]:
    return {
        (d["type"], d["partner"], d["model"], d["unit"], d["sku"], d["amount"])
        for d in truth["discrepancies"]
        if d["phase"] in phases and d["partner"] in BILLING_PARTNERS
    }


def _aws_usage_rows(data: Path) -> int:
    files = str(data / "aws" / "cur2" / "**" / "*.parquet")
    return duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{files}') WHERE line_item_line_item_type = 'Usage'"
    ).fetchone()[0]


def _native_rows(data: Path) -> dict[str, int]:
    """Rows per source as delivered (GCP credits nest into their usage row)."""
    q = {
        "aws": f"read_parquet('{data}/aws/cur2/**/*.parquet')",
        "gcp": f"read_json('{data}/gcp/**/*.json.gz', format = 'newline_delimited')",
        "azure": f"read_csv('{data}/azure/**/*.csv.gz', header = true, all_varchar = true)",
        "snowflake": f"read_parquet('{data}/snowflake/**/CORTEX*/*.parquet')",
    }
    return {p: duckdb.sql(f"SELECT count(*) FROM {src}").fetchone()[0] for p, src in q.items()}


@pytest.mark.unit
def test_slices_cover_the_month_evenly_and_the_size_is_bounded() -> None:
    assert slices.sizes(20_000, 7_000) == [6667, 6667, 6666]
    assert slices.sizes(10_000_000, 500_000) == [500_000] * 20
    assert sum(slices.sizes(1_234_567, 500_000)) == 1_234_567
    assert slices.slice_rows(7_000) == 7_000
    with pytest.raises(ValueError):
        slices.slice_rows(2_000_000)  # unsliced usage ids would reach the fixed parts' ids


@pytest.mark.integration
def test_sliced_month_has_the_lines_asked_for(tmp_path: Path) -> None:
    config, period = load_config(REPO / "config"), Period.parse(PERIOD)
    generate(config, period, tmp_path / "sliced", rows=ROWS, slice_rows=SLICE)
    generate(config, period, tmp_path / "whole", rows=ROWS)  # one table, as before
    # AWS usage rows exactly: 85 % of each slice drawn, the unmapped plant's 12 lines, and
    # one twelfth of each slice of other services.
    parts = slices.sizes(max(ROWS, MIN_ROWS), SLICE)
    want = sum(int(m * 0.85) for m in parts) + 12 + sum(m // 12 for m in parts)
    assert _aws_usage_rows(tmp_path / "sliced") == want
    # Every source: the same lines as the unsliced month, up to per-slice rounding of the
    # draws and of the 1-2 % credit and refund samples.
    sliced, whole = _native_rows(tmp_path / "sliced"), _native_rows(tmp_path / "whole")
    for partner in BILLING_PARTNERS:
        assert abs(sliced[partner] - whole[partner]) <= 0.005 * whole[partner], partner
        assert sliced[partner] > 0.8 * ROWS, partner
    # Each slice went out as native files of its own.
    data = tmp_path / "sliced"
    assert len(list(data.glob("aws/cur2/**/*.snappy.parquet"))) == len(parts) + 1  # + tax
    assert len(list(data.glob("gcp/**/*.json.gz"))) == len(parts) + 1  # + top-ups and tax
    assert len(list(data.glob("azure/**/*.csv.gz"))) == len(parts)
    assert len(list(data.glob("snowflake/**/CORTEX_FUNCTIONS_USAGE_HISTORY/*.parquet"))) == len(
        parts
    )
    # Same seed, same files: the slices' RNG streams and samples are fixed.
    generate(config, period, tmp_path / "again", rows=ROWS, slice_rows=SLICE)
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file()
    )
    for f in files:
        if f.suffix != ".xlsx":  # openpyxl stamps the time (statement-only partners)
            assert (data / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f
    manifest = json.loads(next(data.glob("azure/**/manifest.json")).read_text())
    assert (
        manifest["dataRowCount"]
        == sliced["azure"]
        == sum(b["dataRowCount"] for b in manifest["blobs"])
    )


@pytest.mark.integration
def test_sliced_month_reconciles_to_its_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api
) -> None:
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    from flows.reconcile import reconcile_period

    config, period = load_config(REPO / "config"), Period.parse(PERIOD)
    truth = generate(config, period, tmp_path / "data", rows=ROWS, slice_rows=SLICE)
    first = reconcile_period(period=PERIOD, partners=BILLING_PARTNERS)
    assert first["status"] == "completed"
    assert _found(first["report"]) == _expected(truth, {"initial"})
    assert len(_expected(truth, {"initial"})) >= 10
    # The tolerance-edge grain (its cent-exact top-up computed over all slices) matches.
    grain = pq.read_table(Path(first["report"]).parent / "results" / "reconciliation.parquet")
    rows = {(r["partner"], r["model_id"], r["unit"]): r for r in grain.to_pylist()}
    assert truth["checks"]
    for check in truth["checks"]:
        row = rows[(check["partner"], check["model"], check["unit"])]
        assert row["type"] == "matched" and row["amount"] == Decimal(check["amount"])

    # A restated AWS delivery, sliced too: the restatement is found beside the rest.
    truth = generate(config, period, tmp_path / "data", rows=ROWS, slice_rows=SLICE, restate=True)
    third = reconcile_period(period=PERIOD, partners=BILLING_PARTNERS)
    assert _found(third["report"]) == _expected(truth, {"initial", "restated"})
    assert any(d[0] == "restatement" for d in _found(third["report"]))
