"""The flow with bad inputs: a blocked source is quarantined with a reason naming check,
column and file; a warned source still reconciles; the other partners lose nothing; Data Docs,
run.json and the Prefect artifact carry the data-quality summary."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period
from tests.quality.test_bad_inputs import (
    edit_aws,
    edit_azure,
    first_usage_row,
    header_edit,
    set_col,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api) -> Path:
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    return tmp_path


def _found(report: str) -> set[tuple]:
    t = pq.read_table(Path(report).parent / "results" / "discrepancies.parquet").to_pylist()
    return {(d["type"], d["partner"], d["model_id"], d["unit"], d["sku"]) for d in t}


def test_blocked_source_quarantined_warned_source_reconciled_others_intact(
    workspace: Path,
) -> None:
    data = workspace / "data"
    truth = generate(load_config(REPO / "config"), Period.parse(PERIOD), data, rows=300)
    rel = edit_aws(data, lambda t: set_col(t, "line_item_usage_amount", first_usage_row(t), -5.0))
    edit_azure(data, header_edit(lambda h: [*h, "newMeterAttribute"]))

    from flows.reconcile import reconcile_period

    # The partners with billing exports (statement-only ones need their previous month).
    cloud = [p for p, c in load_config(REPO / "config").partners.items() if not c.statement_only]
    result = reconcile_period(period=PERIOD, dry_run=True, partners=cloud)
    status = {p["partner"]: p for p in result["partners"]}
    assert status["aws"]["status"] == "quarantined"
    reason = status["aws"]["reason"]
    assert f"non_negative_usage(line_item_usage_amount) in file {rel} 1 unexpected" in reason
    assert {status[p]["status"] for p in ("gcp", "azure", "snowflake")} == {"reconciled"}
    expected = {
        (d["type"], d["partner"], d["model"], d["unit"], d["sku"])
        for d in truth["discrepancies"]
        if d["phase"] == "initial" and d["partner"] in cloud and d["partner"] != "aws"
    }
    assert _found(result["report"]) == expected  # nothing lost, nothing added

    run = json.loads((Path(result["report"]).parent / "run.json").read_text())
    by_source = {v["source"]: v for v in run["validation"]}
    assert by_source["aws/billing"]["blocking"] == 1
    azure = by_source["azure/billing"]
    assert azure["success"] and azure["warnings"] >= 1
    assert any(
        f["check"] == "unknown_columns" and f["column"] == "newMeterAttribute"
        for f in azure["failures"]
    )
    assert by_source["gcp/statement"]["suite"] == "statements + statement_completeness"
    docs = Path(result["report"]).parent / "data_docs" / "gx" / "uncommitted" / "data_docs"
    index = docs / "local_site" / "index.html"
    assert index.is_file() and "aws_cur2" in index.read_text()
