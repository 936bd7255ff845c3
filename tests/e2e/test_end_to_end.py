"""End to end on the embedded default: generate a month, run the Prefect flow, and demand
every planted discrepancy found with the right type and amount, and nothing else."""

from __future__ import annotations

import json
import shutil
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period

pytestmark = pytest.mark.e2e
PERIOD = "2026-10"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api) -> Path:
    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "home"))
    return tmp_path


def _generate(ws: Path, restate: bool = False) -> dict:
    config = load_config(REPO / "config")
    return generate(config, Period.parse(PERIOD), ws / "data", rows=800, restate=restate)


def _run(**kw) -> dict:
    from flows.reconcile import reconcile_period

    return reconcile_period(**{"period": PERIOD, **kw})


BILLING_PARTNERS = ["aws", "gcp", "azure", "snowflake"]
STATEMENT_ONLY = ["groq", "nvidia", "dell"]


def _money(x: Decimal | None) -> str | None:
    return None if x is None else str(x.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _found(report: str) -> set[tuple]:
    t = pq.read_table(Path(report).parent / "results" / "discrepancies.parquet").to_pylist()
    return {
        (d["type"], d["partner"], d["model_id"], d["unit"], d["sku"], _money(d["amount"]),
         _money(d["at_stake"]) if d["amount"] is None else None)
        for d in t
    }  # fmt: skip


def _expected(truth: dict, phases: set[str]) -> set[tuple]:
    return {
        (d["type"], d["partner"], d["model"], d["unit"], d["sku"], d["amount"],
         d.get("at_stake") if d["amount"] is None else None)
        for d in truth["discrepancies"]
        if d["phase"] in phases
    }  # fmt: skip


def test_every_plant_found_nothing_else_and_rerun_identical(workspace: Path) -> None:
    truth = _generate(workspace)
    # The statement-only partners' previous month (a clean baseline the generator wrote), so
    # their history checks have a month to compare with.
    baseline = _run(period=str(Period.parse(PERIOD).prev()), partners=STATEMENT_ONLY)
    assert baseline["status"] == "completed"
    first = _run()
    assert first["status"] == "completed"
    assert _found(first["report"]) == _expected(truth, {"initial"})
    assert {d["type"] for d in truth["discrepancies"] if d["phase"] == "initial"} >= {
        "missing_from_statement",
        "missing_from_billing",
        "quantity_mismatch",
        "price_revenue_mismatch",
        "share_miscalculated",
        "currency_fx_mismatch",
        "unmapped_sku",
        "period_shift",
        "duplicate_lines",
        "minimum_guarantee",
        "revenue_arithmetic",
        "total_mismatch",
        "licensed_model_missing",
        "model_vanished",
        "volume_change",
        "price_change",
        "probe_usage_missing",
    }
    html = Path(first["report"]).read_text()
    assert "Statement-only partners: the checks that applied" in html
    # Exactly at the tolerance is accepted, and the difference is still kept to the cent.
    grain = pq.read_table(Path(first["report"]).parent / "results" / "reconciliation.parquet")
    rows = {(r["partner"], r["model_id"], r["unit"]): r for r in grain.to_pylist()}
    assert truth["checks"]
    for check in truth["checks"]:
        row = rows[(check["partner"], check["model"], check["unit"])]
        assert row["type"] == "matched" and row["amount"] == Decimal(check["amount"])

    second = _run()
    assert second["run_id"] != first["run_id"]
    for name in (
        "reconciliation.parquet",
        "discrepancies.parquet",
        "discrepancy_lines.parquet",
        "reconciliation.csv",
        "discrepancies.csv",
    ):
        a = (Path(first["report"]).parent / "results" / name).read_bytes()
        b = (Path(second["report"]).parent / "results" / name).read_bytes()
        assert a == b, f"{name} differs between two runs on the same inputs"

    # The AWS export is restated after the statement was checked: a new snapshot lands, the
    # old one stays, and the change is typed as a restatement, not as a price mismatch.
    truth = _generate(workspace, restate=True)
    third = _run()
    assert _found(third["report"]) == _expected(truth, {"initial", "restated"})
    landed = list((workspace / "home" / "landing" / "aws" / "billing" / PERIOD).iterdir())
    assert len([p for p in landed if p.name.startswith("s")]) == 2

    html = Path(third["report"]).read_text()
    assert "Restatement" in html and "USE1-Llama3-2-90B-input-tokens" in html
    con = duckdb.connect(str(workspace / "home" / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 4


def test_bad_source_is_quarantined_and_the_others_reconcile(workspace: Path) -> None:
    truth = _generate(workspace)
    # Azure's only export run loses its data file: that source cannot be trusted.
    for part in (workspace / "data" / "azure").rglob("part_*.csv.gz"):
        part.unlink()
    # GCP's statement gets a quantity that is not a number.
    stmt = next((workspace / "data" / "statements" / "gcp").rglob("*.json"))
    doc = json.loads(stmt.read_text())
    doc["lines"][0]["quantity"] = "12,5 million"
    stmt.write_text(json.dumps(doc))

    result = _run(dry_run=True, partners=BILLING_PARTNERS)
    status = {p["partner"]: p for p in result["partners"]}
    assert status["azure"]["status"] == "quarantined"
    assert "azure/billing" in status["azure"]["reason"]
    assert status["gcp"]["status"] == "quarantined"
    assert "quantity" in status["gcp"]["reason"] and "row 1" in status["gcp"]["reason"]
    assert result["status"] == "partial"
    expected = {e for e in _expected(truth, {"initial"}) if e[1] in ("aws", "snowflake")}
    assert _found(result["report"]) == expected
    html = Path(result["report"]).read_text()
    assert "Not reconciled this run" in html and "quantity" in html
    # A dry run writes no ledger.
    assert not (workspace / "home" / "warehouse.duckdb").exists()


def test_flow_fails_clearly_when_nothing_can_be_reconciled(workspace: Path) -> None:
    _generate(workspace)
    shutil.rmtree(workspace / "data" / "statements")
    with pytest.raises(RuntimeError, match="no partner could be reconciled"):
        _run(partners=["aws", "gcp"])
