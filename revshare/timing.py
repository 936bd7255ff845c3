"""Wall time per pipeline stage, for ``revshare bench`` and anyone profiling a run.

``with stage("normalize", partner="aws", kind="billing"):`` measures the block. When the
environment names a file in ``REVSHARE_TIMINGS``, each finished stage appends one JSON line
to it (``{"stage", "seconds", "peak_rss_bytes", ...labels}``): the bench runs the flow in a
subprocess and reads the file afterwards, and lines appended by several processes (a Dask
fan-out) or threads still add up, because each line is written whole with one ``write`` in
append mode. Without the variable a stage costs one clock read and nothing is written.

``peak_rss_bytes`` is the process's memory high-water mark when the stage ended; it only
grows, so the first stage that reaches a process's peak is the one that set it.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The environment variable naming the JSON-lines file stages are appended to.
ENV = "REVSHARE_TIMINGS"
_lock = threading.Lock()


@contextmanager
def stage(name: str, **labels: str) -> Iterator[None]:
    """Time the block as stage ``name``; recorded even when the block raises."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        record(name, time.perf_counter() - t0, **labels)


def record(name: str, seconds: float, **labels: str) -> None:
    """Record a stage timed elsewhere (where wrapping the code in ``stage`` is awkward)."""
    target = os.environ.get(ENV)
    if target:
        peak = peak_rss()
        line = json.dumps({"stage": name, "seconds": seconds, "peak_rss_bytes": peak, **labels})
        with _lock, open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def peak_rss(pid: int | str = "self") -> int | None:
    """A process's memory high-water mark in bytes (None once it is gone).

    Linux's ``VmHWM`` belongs to the process's own address space. ``getrusage``'s
    ``ru_maxrss`` (and ``wait4``'s) also keeps the parent's high-water mark from before the
    exec that started the process: a 12 MB child of a 1 GB parent reports 965 MB, so the
    bench's own 1.2 GB showed up as the limit pass's peak and as the flow's first stages'.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    if pid != "self":
        return None  # exited (a zombie has no VmHWM), or no /proc
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # no /proc: next best


def read(path: Path) -> list[dict]:
    """The stage records appended to ``path`` (none if the file does not exist)."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def totals(records: list[dict]) -> dict[str, float]:
    """Seconds per stage name, summed over partners and sources, in first-seen order."""
    out: dict[str, float] = {}
    for r in records:
        out[r["stage"]] = out.get(r["stage"], 0.0) + float(r["seconds"])
    return out


def peak_stage(records: list[dict]) -> str | None:
    """The first stage (with its labels) whose record shows the largest high-water mark: the
    stage during which the recording process reached its peak memory."""
    marked = [r for r in records if r.get("peak_rss_bytes")]
    if not marked:
        return None
    top = max(r["peak_rss_bytes"] for r in marked)
    r = next(r for r in marked if r["peak_rss_bytes"] == top)
    fixed = ("stage", "seconds", "peak_rss_bytes")
    labels = "/".join(str(v) for k, v in r.items() if k not in fixed)
    return f"{r['stage']} {labels}".strip()
