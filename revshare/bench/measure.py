"""Run one command in its own process and measure its wall time and peak memory.

Peak RSS is sampled with psutil over the whole process tree (the command and every process
it starts, summed) every ``interval`` seconds. Why sampling rather than
``resource.getrusage(RUSAGE_CHILDREN)``: that figure is the largest single process among
*all* children the bench has ever waited for, so a later, smaller run would report an earlier
run's peak, and it never sums a tree: the pipeline's flow runs beside Prefect's temporary API
server, a second process whose memory is part of what a run costs. Sampling can miss a spike
shorter than the interval, so the high-water mark of the command's own process is kept too
(the kernel's ``VmHWM``, read at each sample: exact up to the last sample before it exits),
and the tree peak is at least that. Not ``wait4``'s ``ru_maxrss``: it carries this process's
own high-water mark into the child (``revshare.timing.peak_rss``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from revshare.timing import peak_rss


@dataclass
class Measured:
    wall_seconds: float
    peak_rss_tree_bytes: int  # sampled, whole process tree summed
    peak_rss_main_bytes: int  # the command's own process: its VmHWM at the last sample
    returncode: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def as_dict(self) -> dict:
        return asdict(self)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def run(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    interval: float = 0.05,
) -> Measured:
    """Run ``cmd`` to completion, output to ``log``; return its measurements."""
    load_before = os.getloadavg()
    peak = main_peak = 0
    done = threading.Event()
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        ps = psutil.Process(child.pid)

        def sample() -> None:
            nonlocal peak, main_peak
            while not done.is_set():
                peak = max(peak, _tree_rss(ps))
                main_peak = max(main_peak, peak_rss(child.pid) or 0)
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status = os.waitpid(child.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        wall_seconds=wall,
        peak_rss_tree_bytes=max(peak, main_peak),
        peak_rss_main_bytes=main_peak,
        returncode=child.returncode,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
