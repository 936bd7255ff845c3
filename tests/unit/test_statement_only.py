"""Statement-only partners: every planted case found, with its money, and nothing else.

Runs the connectors and the checks the way the flow does, without Prefect: the generator
writes a clean baseline month and a planted month; the baseline is checked and recorded in
a real ledger, whose history the planted month is then checked against. Expected figures come
from the generator's ground truth, computed from the figures it wrote.
"""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import build_connector
from connectors.base import NormalizeContext
from revshare import ledger, ledger_reads
from revshare.config import Config, load_config
from revshare.db import connect
from revshare.discrepancies import FLAGS, MATCHED
from revshare.generate.statement_only import generate_statement_only
from revshare.periods import Period
from revshare.reconcile import PartnerResult
from revshare.sqlutil import lit
from revshare.stages import extract, normalize
from revshare.statement_only import History, check_partner

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OCT = Period(2026, 10)
PARTNERS = ("groq", "nvidia", "dell")


def _canonical(config: Config, data: Path, tmp: Path, pid: str, kind: str, p: Period) -> Path:
    source = getattr(config.partners[pid], kind)
    conn = build_connector(source, data, f"{pid}/{kind}")
    snap = extract(conn, p, tmp / "landing" / pid / kind / str(p))
    ctx = NormalizeContext(pid, p, snap.id, snap.dir, snap.files)
    return normalize(conn, ctx, tmp / "canonical" / f"{pid}-{kind}-{p}.parquet").path


def _check(
    config: Config, data: Path, tmp: Path, pid: str, p: Period, warehouse: Path
) -> PartnerResult:
    con = connect()
    path = _canonical(config, data, tmp, pid, "statement", p)
    con.execute(f"CREATE VIEW statements AS SELECT * FROM read_parquet({lit(path)})")
    probe = config.partners[pid].probe is not None
    if probe:
        path = _canonical(config, data, tmp, pid, "probe", p)
        con.execute(f"CREATE VIEW probe AS SELECT * FROM read_parquet({lit(path)})")
    rows = ledger_reads.reported_history(warehouse, str(p.prev()), pid)
    history = None if rows is None else History(str(p.prev()), rows)
    out = tmp / "results" / f"{pid}-{p}"
    return check_partner(con, config, pid, p, history=history, probe=probe, out=out)


def _record(warehouse: Path, p: Period, results: list[PartnerResult]) -> None:
    grain = pa.concat_tables([r.grain for r in results], promote_options="permissive")
    now = datetime.now(UTC)
    run = {"run_id": f"test-{p}", "period": str(p), "partners": list(PARTNERS),
           "started_at": now, "finished_at": now, "status": "completed",
           "report_path": ""}  # fmt: skip
    ledger.record_run(warehouse, run, [], {"reconciliation": grain})


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("statement_only")
    config = load_config(REPO / "config")
    truth = generate_statement_only(config, OCT, tmp / "data")
    warehouse = tmp / "warehouse.duckdb"
    baseline = [_check(config, tmp / "data", tmp, pid, OCT.prev(), warehouse) for pid in PARTNERS]
    _record(warehouse, OCT.prev(), baseline)
    month = {pid: _check(config, tmp / "data", tmp, pid, OCT, warehouse) for pid in PARTNERS}
    return {"truth": truth, "baseline": baseline, "month": month}


def _found(result: PartnerResult) -> list[dict]:
    return [r for r in result.grain.to_pylist() if r["type"] != MATCHED]


def test_baseline_month_flags_only_the_model_never_reported(checked: dict) -> None:
    """The clean month: arithmetic, contract and totals all agree; Dell never reports a model
    it is licensed for; no history exists yet, so the history check does not apply."""
    flagged = [(r["partner"], r["type"], r["model_id"]) for b in checked["baseline"]
               for r in _found(b)]  # fmt: skip
    assert flagged == [("dell", "licensed_model_missing", "llama-4-maverick")]
    for b in checked["baseline"]:
        history = next(c for c in b.checks if c["check"] == "history")
        assert history["status"] == "not applicable"


def test_every_plant_found_with_its_money_and_nothing_else(checked: dict) -> None:
    def key(d: dict) -> tuple:
        return (d["partner"], d["type"], d.get("model") or d.get("model_id"), d["unit"])

    expected = {key(t): t for t in checked["truth"]}
    found = {key(r): r for res in checked["month"].values() for r in _found(res)}
    assert sorted(found) == sorted(expected)
    for k, t in expected.items():
        r = found[k]
        if t["amount"] is None:
            assert r["amount"] is None, k
        else:
            assert round(r["amount"], 2) == Decimal(t["amount"]), k
        if t["at_stake"] is not None:
            assert round(r["at_stake"], 2) == Decimal(t["at_stake"]), k
        if r["type"] in FLAGS:
            assert r["amount"] is None
        assert r["explanation"], k


def test_checks_applied_are_listed_per_partner(checked: dict) -> None:
    status = {pid: {c["check"]: c["status"] for c in res.checks}
              for pid, res in checked["month"].items()}  # fmt: skip
    assert status["groq"] == {"arithmetic": "2 failed", "contract": "passed",
                              "completeness": "passed", "history": "passed",
                              "probe": "1 failed"}  # fmt: skip
    assert status["nvidia"]["probe"] == "not applicable"
    assert status["nvidia"]["history"] == "2 failed"
    assert status["dell"]["contract"] == "1 failed"
    assert status["dell"]["completeness"] == "1 failed"


def test_amounts_add_up_to_what_the_partner_pays_minus_what_it_owes(checked: dict) -> None:
    """Net variance (the sum of amounts) = the statement's total - max(contract share,
    guarantee) + the share on missing probe usage; flags carry no amount."""
    for _pid, res in checked["month"].items():
        rows = res.grain.to_pylist()
        net = sum((r["amount"] or 0 for r in rows), Decimal(0))
        lines = [r for r in rows if r["check_name"] == "arithmetic" and r["model_id"]]
        reported = sum((r["reported_share"] for r in lines), Decimal(0))
        expected = sum((r["expected_share"] for r in lines), Decimal(0))
        extra = sum((r["amount"] for r in rows if r["check_name"] in ("contract", "probe")
                     or (r["check_name"] == "arithmetic" and not r["model_id"])),
                    Decimal(0))  # fmt: skip
        assert net == reported - expected + extra


def test_lines_behind_each_discrepancy_point_into_the_snapshots(checked: dict) -> None:
    groq = checked["month"]["groq"]
    probe_id = next(r["discrepancy_id"] for r in _found(groq)
                    if r["type"] == "probe_usage_missing")  # fmt: skip
    behind = [r for r in pq.read_table(groq.lines).to_pylist() if r["discrepancy_id"] == probe_id]
    assert {r["side"] for r in behind} == {"probe"}
    assert len(behind) == 200  # the month's requests, not the one from the month before
    assert all(r["source_file"] == "probe-usage.csv" and r["source_row"] for r in behind)


def test_generated_statements_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    """The same month generated twice lands as the same snapshot: the Dell workbook carries
    its issue date, not the clock, in its properties and in every zip entry."""
    config = load_config(REPO / "config")
    first, second = tmp_path / "a", tmp_path / "b"
    generate_statement_only(config, OCT, first)
    generate_statement_only(config, OCT, second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    (book,) = [first / rel for rel in files if rel.name == f"DELL-{OCT.compact}-r1.xlsx"]
    issued = datetime(2026, 11, 7)
    with zipfile.ZipFile(book) as z:
        assert {i.date_time for i in z.infolist()} == {issued.timetuple()[:6]}
    props = openpyxl.load_workbook(book).properties
    assert (props.created, props.modified) == (issued, issued)
