"""One run at a time per (period, partner): a file lock under ``REVSHARE_HOME/locks``.

Two runs of the same (period, partner) would race on the ledger ("which billing snapshot was
this statement first checked against?") and on the restatement baseline, so the second run
waits for the first, up to a timeout, then fails with a message naming the holder. ``fcntl``
locks are released by the kernel when the holding process dies, so a crashed run never leaves
a stale lock behind. They are per host: runs on several machines need a shared lock (a
Prefect global concurrency limit with one slot per (period, partner)), see docs/operations.md.

The same locks tell a live run from a dead one (``live_runs``): a run the ledger still shows
``running`` that holds none of its locks was killed or crashed before publishing, and
``sweep_interrupted`` marks it ``interrupted``; retention never touches what a live run holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from revshare import ledger, ledger_reads

#: How long a second run waits for the first before failing (seconds).
DEFAULT_TIMEOUT = float(os.environ.get("REVSHARE_LOCK_TIMEOUT_SECONDS", "900"))


class LockTimeout(RuntimeError):
    """Another run holds the (period, partner) lock longer than we were willing to wait."""


def lock_path(home: Path, period: str, partner: str) -> Path:
    return home / "locks" / period / f"{partner}.lock"


@contextmanager
def partition_lock(
    home: Path, period: str, partner: str, run_id: str, timeout: float | None = None
) -> Iterator[Path]:
    """Hold the (period, partner) lock; poll until ``timeout`` then raise LockTimeout."""
    path = lock_path(home, period, partner)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{period}/{partner} is being reconciled by another run "
                        f"({_holder(path)}); waited {timeout:.0f} s"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        info = {"run_id": run_id, "pid": os.getpid(), "since": datetime.now(UTC).isoformat()}
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def live_runs(home: Path) -> dict[str, set[tuple[str, str]]]:
    """Runs that hold a (period, partner) lock right now, i.e. whose process is alive and
    working: run id -> the (period, partner) pairs it holds. A lock file nobody holds names
    its last holder, which is finished or dead: that is how a ``running`` ledger row or a
    ``.partial`` run folder is told apart from a killed run's leftovers."""
    live: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((home / "locks").glob("*/*.lock")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            rid = _info(path).get("run_id")
            if rid:
                live.setdefault(str(rid), set()).add((path.parent.name, path.stem))
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return live


def _info(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"run {info.get('run_id')}, pid {info.get('pid')}, since {info.get('since')}"


@contextmanager
def partition_locks(
    home: Path, period: str, partners: list[str], run_id: str, timeout: float | None = None
) -> Iterator[None]:
    """Take every partner's lock in sorted order (a fixed order cannot deadlock)."""
    with ExitStack() as stack:
        for partner in sorted(set(partners)):
            stack.enter_context(partition_lock(home, period, partner, run_id, timeout))
        yield


def sweep_interrupted(home: Path, warehouse: Path, now: datetime | None = None) -> list[str]:
    """Mark ``interrupted`` every run the ledger shows ``running`` that holds no lock any
    more: its process was killed or crashed before publishing. Returns their ids."""
    running = ledger_reads.running_runs(warehouse)
    if not running:
        return []
    live = live_runs(home)
    dead = [r["run_id"] for r in running if r["run_id"] not in live]
    ledger.mark_interrupted(warehouse, dead, now or datetime.now(UTC))
    return dead
