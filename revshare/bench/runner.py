"""``revshare bench``: generate a month, run the pipeline and the two references on it.

Each measured run is a process of its own (``revshare.bench.measure``): the pipeline through
the CLI (``revshare run``, the real Prefect flow, on a fresh home so nothing is reused), the
limit (``revshare.bench.limit``) and the pandas way (``revshare.bench.pandas_way``). The core
never imports Prefect: only the pipeline's subprocess does. Stage times come from the
``REVSHARE_TIMINGS`` file the flow appends to (``revshare.timing``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil

from revshare import timing
from revshare.bench import compare, report
from revshare.bench.measure import run
from revshare.config import Config, Settings, load_config
from revshare.periods import Period
from revshare.sqlutil import lit

REFERENCES = ("limit", "pandas")
#: Stage names the flow records, in pipeline order; validation stages start with ``validate``.
STAGES = (
    "extract", "decode", "validate_native", "normalize", "validate_canonical",
    "validate_completeness", "reconcile", "validate_docs", "publish",
)  # fmt: skip


def _env(**extra: Path | str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh Prefect home migrates its database first; on a loaded machine that alone can
    # pass the CLI's 120 s start-up default, and a bench that dies there measures nothing.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    return env


def _py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _latest_run(home: Path) -> Path | None:
    found = sorted((home / "runs").glob("*/results/reconciliation.parquet"))
    return found[-1].parent.parent if found else None


def pipeline_grain(run_dir: Path) -> list[dict]:
    """The pipeline's figures per (partner, model, unit), from the run's results."""
    path = lit(run_dir / "results" / "reconciliation.parquet")
    cols = ("billed_tokens", "billed_revenue", "expected_share", "reported_tokens",
            "reported_share", "amount")  # fmt: skip
    sums = ", ".join(f"CAST(sum({c}) AS DOUBLE) AS {c}" for c in cols)
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT partner, model_id, unit, {sums} FROM read_parquet({path}) "
        "WHERE model_id IS NOT NULL GROUP BY ALL ORDER BY ALL"
    )
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def _statuses(run_dir: Path) -> dict[str, str]:
    """``partner/kind`` -> ok or quarantined, as the run recorded its sources."""
    doc = json.loads((run_dir / "run.json").read_text())
    return {f"{s['partner']}/{s['kind']}": s["status"] for s in doc.get("sources", [])}


def bench(
    rows_per_source: int,
    out: Path,
    *,
    references: tuple[str, ...] = REFERENCES,
    keep: bool = False,
    reuse: bool = False,
    period: str = "2026-10",
    seed: int = 7,
) -> dict:
    """Run the benchmark at one size; merge it into ``out/bench.json`` and rewrite
    ``out/bench.md``. Returns this size's result. ``reuse``: measure on the month an earlier
    ``keep`` run generated in ``out`` (10M lines per source take minutes to generate)."""
    unknown = set(references) - set(REFERENCES)
    if unknown:
        raise ValueError(f"unknown reference(s): {', '.join(sorted(unknown))}")
    settings = Settings()
    config_dir = settings.config_dir.resolve()
    config = load_config(config_dir)
    p = Period.parse(period)
    out = out.resolve()
    scratch = out / f"scratch-{rows_per_source}"
    data, home, logs = scratch / "data", scratch / "home", scratch / "logs"
    reuse = reuse and (data / "ground_truth.json").is_file()
    for old in scratch.glob("*") if reuse else (scratch,):
        if old != data:  # stage times and reference outputs are per measurement
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    for d in (data, home, logs):
        d.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    base = {"REVSHARE_CONFIG_DIR": config_dir, "REVSHARE_DATA_DIR": data,
            "REVSHARE_HOME": home}  # fmt: skip
    base.setdefault("PREFECT_HOME", os.environ.get("PREFECT_HOME", str(out / ".prefect")))
    env = _env(**base)
    result: dict = {
        "rows_per_source": rows_per_source, "period": period, "seed": seed,
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
    }  # fmt: skip
    if reuse:  # the month a --keep run generated here: same size, period and seed
        result["generate"] = {"reused": str(data)}
    else:
        gen = run(
            _py("revshare.cli", "generate", "--period", period, "--out", str(data),
                "--rows", str(rows_per_source), "--seed", str(seed)),
            env=env, cwd=cwd, log=logs / "generate.log",
        )  # fmt: skip
        _check(gen.returncode, "generate", logs / "generate.log")
        result["generate"] = gen.as_dict()
    result["lines"] = count_lines(config, p, data)
    result["lines_total"] = sum(result["lines"].values())

    stamps = scratch / "timings.jsonl"
    pipe = run(
        _py("revshare.cli", "run", "--period", period),
        env=_env(**base, REVSHARE_TIMINGS=stamps), cwd=cwd, log=logs / "pipeline.log",
    )  # fmt: skip
    _check(pipe.returncode, "pipeline", logs / "pipeline.log")
    run_dir = _latest_run(home)
    if run_dir is None:
        raise RuntimeError(f"the pipeline wrote no results; see {logs / 'pipeline.log'}")
    records = timing.read(stamps)
    stages = timing.totals(records)
    stages["other"] = max(pipe.wall_seconds - sum(stages.values()), 0.0)
    grain = pipeline_grain(run_dir)
    validation = sum(v for k, v in stages.items() if k.startswith("validate"))
    result["pipeline"] = {
        **pipe.as_dict(), "stages": stages, "statuses": _statuses(run_dir),
        "lines_per_second": result["lines_total"] / pipe.wall_seconds,
        "validation_share": validation / pipe.wall_seconds, "grain": grain,
        "peak_rss_stage": timing.peak_stage(records),
    }  # fmt: skip
    for ref, module in (("limit", "revshare.bench.limit"), ("pandas", "revshare.bench.pandas_way")):
        if ref not in references:
            continue
        target = scratch / f"{ref}.json"
        m = run(
            _py(module, "--data", str(data), "--period", period, "--out", str(target)),
            env=env, cwd=cwd, log=logs / f"{ref}.log",
        )  # fmt: skip
        _check(m.returncode, ref, logs / f"{ref}.log")
        doc = json.loads(target.read_text())
        ref_grain = (
            compare.limit_grain(doc["by_currency"], config, p) if ref == "limit" else doc["grain"]
        )
        fields = compare.LIMIT_FIELDS if ref == "limit" else compare.PANDAS_FIELDS
        result[ref] = {
            **m.as_dict(), "inner_seconds": doc["seconds"], "grain": ref_grain,
            "lines_per_second": result["lines_total"] / m.wall_seconds,
            "agreement": compare.agree(grain, ref_grain, fields, list(result["lines"])),
        }  # fmt: skip
    result["ratios"] = _ratios(result)
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    report.merge(out, result)
    return result


def _ratios(result: dict) -> dict[str, float]:
    pipe = result["pipeline"]["wall_seconds"]
    out = {}
    if "limit" in result:
        out["pipeline_over_limit"] = pipe / result["limit"]["wall_seconds"]
    if "pandas" in result:
        out["pandas_over_pipeline"] = result["pandas"]["wall_seconds"] / pipe
    return out


def _check(code: int, what: str, log: Path) -> None:
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{what} exited with {code}; last lines of {log}:\n" + "\n".join(tail))


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(), "duckdb": duckdb.__version__,
        "system": f"{platform.system()} {platform.release()}",
    }  # fmt: skip


def count_lines(config: Config, period: Period, data: Path) -> dict[str, int]:
    """Native billing lines per partner in the generated files (bookkeeping, not timed)."""
    from revshare.bench.limit import count_sql
    from revshare.bench.natives import locate

    con = duckdb.connect()
    return {
        n.partner: con.execute(count_sql(n)).fetchone()[0] for n in locate(config, period, data)
    }
