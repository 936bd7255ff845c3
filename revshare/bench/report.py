"""``bench.json`` (every size measured into one folder) and ``bench.md`` (its tables).

A run at one size replaces that size's entry and keeps the others, so measuring 1M and then
10M into the same folder gives one table with both rows.
"""

from __future__ import annotations

import json
from pathlib import Path

_STAGES = (
    ("extract", "extract"), ("decode", "decode"), ("validate_native", "validate native"),
    ("normalize", "normalize"),
    ("validate_canonical", "validate canonical"), ("validate_completeness", "completeness"),
    ("reconcile", "reconcile"), ("validate_docs", "data docs"), ("publish", "publish"),
    ("other", "other"),
)  # fmt: skip


def merge(out: Path, result: dict) -> None:
    path = out / "bench.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = [r for r in runs if r["rows_per_source"] != result["rows_per_source"]] + [result]
    runs.sort(key=lambda r: r["rows_per_source"])
    path.write_text(json.dumps({"runs": runs}, indent=1, default=str))
    (out / "bench.md").write_text(markdown(runs))


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:,.1f}"


def _gb(x: int | None) -> str:
    return "" if x is None else f"{x / 1e9:.2f}"


def _load(m: dict) -> str:
    return f"{m['load_before'][0]:.1f}"


def markdown(runs: list[dict]) -> str:
    """The two tables: totals and references, then seconds per pipeline stage."""
    head = [
        "rows per source", "lines read", "pipeline s", "lines/s", "peak RSS GB",
        "limit s", "limit RSS GB", "pandas s", "pandas RSS GB", "pipeline / limit",
        "pandas / pipeline", "validation share", "agrees (limit, pandas)", "load 1-min",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for r in runs:
        p, lim, pd_ = r["pipeline"], r.get("limit", {}), r.get("pandas", {})
        ratios = r.get("ratios", {})
        agrees = ", ".join(
            ("yes" if x["agreement"]["equal"] else "NO") if x else "—" for x in (lim, pd_)
        )
        loads = " / ".join(_load(m) for m in (p, lim, pd_) if m)
        lines.append("| " + " | ".join([
            f"{r['rows_per_source']:,}", f"{r['lines_total']:,}", _s(p["wall_seconds"]),
            f"{p['lines_per_second']:,.0f}", _gb(p["peak_rss_tree_bytes"]),
            _s(lim.get("wall_seconds")), _gb(lim.get("peak_rss_tree_bytes")),
            _s(pd_.get("wall_seconds")), _gb(pd_.get("peak_rss_tree_bytes")),
            f"{ratios['pipeline_over_limit']:.1f}x" if "pipeline_over_limit" in ratios else "",
            f"{ratios['pandas_over_pipeline']:.1f}x" if "pandas_over_pipeline" in ratios else "",
            f"{p['validation_share']:.0%}", agrees, loads,
        ]) + " |")  # fmt: skip
    stage_head = ["rows per source", *(label for _, label in _STAGES), "total"]
    lines += ["", "Pipeline seconds per stage (summed over partners and sources):", ""]
    lines += ["| " + " | ".join(stage_head) + " |", "|" + " ---: |" * len(stage_head)]
    for r in runs:
        st = r["pipeline"]["stages"]
        lines.append("| " + " | ".join([
            f"{r['rows_per_source']:,}", *(_s(st.get(k, 0.0)) for k, _ in _STAGES),
            _s(r["pipeline"]["wall_seconds"]),
        ]) + " |")  # fmt: skip
    lines.append("")
    for r in runs:
        p = r["pipeline"]
        if p.get("peak_rss_stage"):
            lines.append(
                f"- {r['rows_per_source']:,} per source: the flow's own process peaked at "
                f"{_gb(p['peak_rss_main_bytes'])} GB, first reached during "
                f"`{p['peak_rss_stage']}`."
            )
    lines += [
        "",
        "Wall seconds of each process from start to exit (the pipeline's include starting "
        "Python and Prefect's temporary API: `other`). Peak RSS: the process tree, sampled "
        "every 50 ms (psutil). Load: 1-minute load average when each run started "
        "(pipeline / limit / pandas).",
        "",
    ]
    return "\n".join(lines)
