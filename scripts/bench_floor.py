"""The pipeline's floor on a month `revshare bench --keep` left behind: the least work this
design does per billing source, each step with the pipeline's own code, and nothing else.

    .venv/bin/revshare bench --rows-per-source 10000000 --out var/bench --keep
    .venv/bin/python scripts/bench_floor.py var/bench/scratch-10000000

Per billing source, from the landed snapshot the bench's run made:

- decode: each text file parsed once into Parquet (``stages.decode``; none for Parquet);
- keys: the SKU keys matched against the catalog (``catalog.map_keys``);
- canonical: the canonical lines written, every line once (``stages.write_canonical``);
- grain: one aggregate over those lines, the least a reconciliation reads.

Left out, and shown for scale only: the connector's value checks (run when the canonical
SELECT is built), the native and canonical suites, the row accounting, the reconciliation's
joins and lines, the report, the packets, the ledger, and the fixed cost of starting Python and
Prefect. The floor is therefore a lower bound on the pipeline's time on this machine, which
the issue 9 targets (at most 4x the limit, 10x faster than the pandas way) are measured
against in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = ("decode", "keys", "canonical", "grain")


def _timed(took: dict[str, float], step: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    took[step] = time.perf_counter() - t0
    return result


def _measure(conn: Any, ctx: Any, catalog: Any, work: Path) -> tuple[int, dict, float]:
    """One billing source's floor steps: (mapped lines, seconds per step, value checks' s)."""
    from revshare.catalog import map_keys, mapped_sql, register_rules
    from revshare.db import connect
    from revshare.sqlutil import lit
    from revshare.stages import decode, write_canonical

    took: dict[str, float] = {}
    decoded = work / "decoded"
    ctx = _timed(took, "decode", lambda: decode(conn, ctx, decoded, temp_dir=work / "spill"))
    checks: dict[str, float] = {}
    sql = _timed(checks, "value_checks", lambda: conn.normalize_sql(ctx))
    con = connect(temp_dir=work / "spill")
    _timed(took, "keys", lambda: (register_rules(con, catalog), map_keys(con, sql, catalog)))
    out = work / "canonical.parquet"
    _timed(took, "canonical", lambda: write_canonical(con, mapped_sql(sql), out))
    # Fetched whole: an outer query reading only the counts would let DuckDB drop the sums.
    grain = _timed(took, "grain", lambda: con.execute(
        f"SELECT x_ModelId, x_Unit, BillingCurrency, count(*), sum(x_Tokens), sum(BilledCost)"
        f" FROM read_parquet({lit(out)}) WHERE x_CatalogStatus = 'mapped' GROUP BY ALL"
    ).fetchall())  # fmt: skip
    con.close()
    shutil.rmtree(decoded, ignore_errors=True)
    out.unlink()
    return sum(g[3] for g in grain), took, checks["value_checks"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scratch", type=Path, help="a bench scratch folder kept with --keep")
    ap.add_argument("--period", default="2026-10", help="the bench's period (its default)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args()
    scratch = args.scratch.resolve()
    # Settings read these; set before the imports that build them.
    os.environ["REVSHARE_DATA_DIR"] = str(scratch / "data")
    os.environ["REVSHARE_HOME"] = str(scratch / "home")
    from connectors import build_connector
    from connectors.base import NormalizeContext
    from revshare.config import Settings, load_config
    from revshare.periods import Period
    from revshare.stages import snapshot_context
    from revshare.store import open_snapshot

    settings = Settings()
    config = load_config(settings.config_dir.resolve())
    period = Period.parse(args.period)
    rows, totals = [], dict.fromkeys(STEPS, 0.0)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for pid, partner in config.partners.items():
            landing = settings.landing_dir / pid / "billing" / str(period)
            if partner.billing is None or not landing.is_dir():
                continue
            conn = build_connector(partner.billing, settings.data_dir, f"{pid}/billing")
            snap = open_snapshot(landing, max(p.name for p in landing.iterdir() if p.is_dir()))
            ctx = snapshot_context(NormalizeContext, pid, period, snap)
            lines, took, checks = _measure(conn, ctx, config.catalog.partners[pid], Path(tmp))
            for k in STEPS:
                totals[k] += took[k]
            rows.append((pid, lines, took, checks))
            print(f"{pid}: " + ", ".join(f"{k} {took[k]:.1f} s" for k in STEPS), flush=True)
    print(_table(rows, totals, scratch))
    if args.json:
        doc = {
            "floor_seconds": sum(totals.values()),
            "sources": {
                pid: {"mapped_lines": n, "value_checks": checks, **took}
                for pid, n, took, checks in rows
            },
        }
        args.json.write_text(json.dumps(doc, indent=2))


def _table(rows: list, totals: dict[str, float], scratch: Path) -> str:
    head = "| source | mapped lines | " + " | ".join(STEPS) + " | floor | value checks (left out) |"
    out = [head, "| --- |" + " ---: |" * (len(STEPS) + 3)]
    for pid, lines, took, checks in rows:
        cells = " | ".join(f"{took[k]:.1f}" for k in STEPS)
        out.append(f"| {pid} | {lines:,} | {cells} | {sum(took.values()):.1f} | {checks:.1f} |")
    floor = sum(totals.values())
    cells = " | ".join(f"{totals[k]:.1f}" for k in STEPS)
    out.append(f"| all | | {cells} | **{floor:.1f}** | {sum(r[3] for r in rows):.1f} |")
    refs = {r: scratch / f"{r}.json" for r in ("limit", "pandas")}
    secs = {r: json.loads(p.read_text())["seconds"] for r, p in refs.items() if p.exists()}
    out.append("")
    if "limit" in secs:
        out.append(
            f"- the limit pass on these files (the bench's last run of it): "
            f"{secs['limit']:.1f} s; floor / limit = {floor / secs['limit']:.2f}x"
        )
    if "pandas" in secs:
        out.append(
            f"- the pandas way on these files (the bench's last run of it): "
            f"{secs['pandas']:.1f} s; pandas / floor = {secs['pandas'] / floor:.2f}x"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
