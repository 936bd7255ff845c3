"""``revshare bench`` at a few thousand lines: the report is complete and both references
reach the pipeline's figures (the pandas way to every reconciliation figure of the grain, the
limit pass to the billed tokens and revenue)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from revshare.bench import compare
from revshare.bench.runner import STAGES, bench

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BILLING_PARTNERS = {"aws", "gcp", "azure", "snowflake"}
#: The steps scripts/bench_floor.py times; their sum is the floor.
STEPS_TIMED = ("decode", "keys", "canonical", "grain")


def _bench(out: Path, **kwargs: object) -> dict:
    saved = {k: os.environ.get(k) for k in ("REVSHARE_CONFIG_DIR", "PREFECT_HOME")}
    os.environ["REVSHARE_CONFIG_DIR"] = str(REPO / "config")
    os.environ["PREFECT_HOME"] = str(out / ".prefect")
    try:
        return bench(2000, out, **kwargs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    return out, _bench(out)


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A bench run that keeps its month (``--keep``)."""
    out = tmp_path_factory.mktemp("kept")
    return out, _bench(out, references=(), keep=True)


def test_reuse_month_measures_the_kept_files_afresh(kept: tuple[Path, dict]) -> None:
    out, first = kept
    data = out / "scratch-2000" / "data"
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    again = _bench(out, references=(), keep=True, reuse=True)
    assert again["generate"] == {"reused": str(data)} and "wall_seconds" in first["generate"]
    assert sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file()) == files
    assert again["lines"] == first["lines"]
    assert again["pipeline"]["grain"] == first["pipeline"]["grain"]
    # Stage times are this measurement's only, not added to the first one's.
    p = again["pipeline"]
    assert sum(p["stages"].values()) == pytest.approx(p["wall_seconds"], rel=1e-6)
    assert p["stages"]["other"] > 0


def test_floor_script_writes_every_billing_source_canonical_lines(
    kept: tuple[Path, dict], tmp_path: Path
) -> None:
    """``scripts/bench_floor.py`` on a kept month: each billing source's floor steps ran on
    the same lines as the pipeline's run (its mapped canonical lines, counted here)."""
    out, _ = kept
    scratch, result = out / "scratch-2000", tmp_path / "floor.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_floor.py"), str(scratch)]
    env = {**os.environ, "REVSHARE_CONFIG_DIR": str(REPO / "config")}
    done = subprocess.run([*cmd, "--json", str(result)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(result.read_text())
    assert set(doc["sources"]) == BILLING_PARTNERS
    con = duckdb.connect()
    for pid, took in doc["sources"].items():
        canonical = sorted(scratch.glob(f"home/runs/*/work/{pid}.billing.parquet"))[-1]
        mapped = con.execute(
            f"SELECT count(*) FROM read_parquet('{canonical}') WHERE x_CatalogStatus = 'mapped'"
        ).fetchone()[0]
        assert took["mapped_lines"] == mapped > 0, pid
        assert all(took[k] >= 0 for k in STEPS_TIMED)
    steps = sum(v for t in doc["sources"].values() for k, v in t.items() if k in STEPS_TIMED)
    assert doc["floor_seconds"] == pytest.approx(steps)
    assert "| all |" in done.stdout and "floor / limit" not in done.stdout  # no references kept


def test_json_and_markdown_have_every_field(measured: tuple[Path, dict]) -> None:
    out, _ = measured
    doc = json.loads((out / "bench.json").read_text())
    assert [r["rows_per_source"] for r in doc["runs"]] == [2000]
    run = doc["runs"][0]
    for key in ("lines", "lines_total", "generate", "pipeline", "limit", "pandas", "ratios",
                "machine", "period"):  # fmt: skip
        assert key in run, key
    assert set(run["lines"]) == BILLING_PARTNERS and run["lines_total"] > 4 * 1500
    p = run["pipeline"]
    assert set(STAGES) | {"other"} <= set(p["stages"]), p["stages"]
    assert all(v >= 0 for v in p["stages"].values())
    assert sum(p["stages"].values()) == pytest.approx(p["wall_seconds"], rel=1e-6)
    assert 0 < p["validation_share"] < 1
    assert p["lines_per_second"] == pytest.approx(run["lines_total"] / p["wall_seconds"])
    for m in (p, run["limit"], run["pandas"]):
        assert m["returncode"] == 0 and m["wall_seconds"] > 0
        assert m["peak_rss_tree_bytes"] >= m["peak_rss_main_bytes"] > 10_000_000
        assert len(m["load_before"]) == 3
    assert set(run["ratios"]) == {"pipeline_over_limit", "pandas_over_pipeline"}
    # The stage during which the flow's process reached its peak, from the stage records.
    assert p["peak_rss_stage"].split()[0] in {*STAGES, "publish", "lock_wait"}
    md = (out / "bench.md").read_text()
    assert "| 2,000 |" in md and "pipeline / limit" in md and "validate native" in md
    assert f"first reached during `{p['peak_rss_stage']}`" in md


def test_peak_stage_is_the_first_to_reach_the_high_water_mark(tmp_path: Path, monkeypatch) -> None:
    from revshare import timing

    monkeypatch.setenv(timing.ENV, str(tmp_path / "t.jsonl"))
    timing.record("extract", 1.0, partner="aws", kind="billing")
    records = timing.read(tmp_path / "t.jsonl")
    assert records[0]["peak_rss_bytes"] > 10_000_000  # this process's own high-water mark
    marks = [("extract", 5), ("normalize", 9), ("reconcile", 9), ("publish", 7)]
    records = [
        {"stage": s, "seconds": 1.0, "peak_rss_bytes": b, "partner": "gcp"} for s, b in marks
    ]
    assert timing.peak_stage(records) == "normalize gcp"
    assert timing.peak_stage([{"stage": "extract", "seconds": 1.0}]) is None


def test_a_small_child_of_a_big_parent_is_measured_small(tmp_path: Path, monkeypatch) -> None:
    """``ru_maxrss`` carries the parent's high-water mark into a child (the bench's 1.2 GB
    showed as the limit pass's peak); the measurement and the stage records must not."""
    from revshare import timing
    from revshare.bench import measure

    ballast = b"\1" * 600_000_000  # written, so resident in this process
    stamps = tmp_path / "t.jsonl"
    code = "import time; from revshare import timing; time.sleep(0.5); timing.record('x', 0.1)"
    m = measure.run(
        [sys.executable, "-c", code],
        env={**os.environ, timing.ENV: str(stamps)},
        cwd=REPO,
        log=tmp_path / "log",
    )
    assert m.returncode == 0, (tmp_path / "log").read_text()
    assert 5_000_000 < m.peak_rss_main_bytes < 300_000_000 < len(ballast)
    assert 5_000_000 < timing.read(stamps)[0]["peak_rss_bytes"] < 300_000_000


def test_pandas_reference_equals_pipeline_grain(measured: tuple[Path, dict]) -> None:
    _, result = measured
    agreement = result["pandas"]["agreement"]
    assert agreement["equal"], agreement["mismatches"]
    assert set(agreement["partners"]) == BILLING_PARTNERS
    # The planted discrepancies are in the figures compared, not only matched grains.
    assert any(abs(r["amount"] or 0) > 1 for r in result["pipeline"]["grain"])


def test_limit_pass_equals_pipeline_grain(measured: tuple[Path, dict]) -> None:
    _, result = measured
    agreement = result["limit"]["agreement"]
    assert agreement["equal"], agreement["mismatches"]
    assert agreement["rows"] == len(
        [r for r in result["pipeline"]["grain"] if r["partner"] in BILLING_PARTNERS]
    )


def test_agreement_catches_a_cent(measured: tuple[Path, dict]) -> None:
    """The comparison can fail: two cents off on one grain, or a grain missing, is reported."""
    _, result = measured
    pipeline, ref = result["pipeline"]["grain"], result["pandas"]["grain"]
    off = [dict(r) for r in ref]
    target = next(r for r in off if r["billed_revenue"])
    target["billed_revenue"] += 0.02
    verdict = compare.agree(pipeline, off, compare.PANDAS_FIELDS, sorted(BILLING_PARTNERS))
    assert not verdict["equal"]
    assert verdict["mismatches"][0]["field"] == "billed_revenue"
    short = compare.agree(pipeline, ref[1:], compare.PANDAS_FIELDS, sorted(BILLING_PARTNERS))
    assert not short["equal"]
