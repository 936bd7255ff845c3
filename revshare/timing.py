"""Wall time per pipeline stage, for ``revshare bench`` and anyone profiling a run.

``with stage("normalize", partner="aws", kind="billing"):`` measures the block. When the
environment names a file in ``REVSHARE_TIMINGS``, each finished stage appends one JSON line
to it (``{"stage", "seconds", ...labels}``): the bench runs the flow in a subprocess and
reads the file afterwards, and lines appended by several processes (a Dask fan-out) or threads
still add up, because each line is written whole with one ``write`` in append mode. Without
the variable a stage costs one clock read and nothing is written.
"""

from __future__ import annotations

import json
import os
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
        line = json.dumps({"stage": name, "seconds": seconds, **labels})
        with _lock, open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


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
