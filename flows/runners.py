"""Where each partner's month runs: in the flow's own process (default) or on a Dask cluster.

Reconciliation splits cleanly by partner, and ``process_partner`` takes and returns plain,
picklable values, so the flow can hand partners to prefect-dask's ``DaskTaskRunner`` and
gather the runs back in partner order (outputs stay byte-identical to an in-process run).

Settings (environment, like every ``REVSHARE_*`` setting):

- ``REVSHARE_TASK_RUNNER``: ``local`` (default: one partner after the other, in the flow's
  process, exactly as before) or ``dask``;
- ``REVSHARE_DASK_ADDRESS``: the scheduler of an existing cluster (``tcp://host:8786``);
  unset with ``dask``: a temporary ``distributed.LocalCluster`` of
  ``REVSHARE_DASK_WORKERS`` worker processes (default 2), one thread each, lives for the run.

What stays in the flow's process: the (period, partner) locks, every write to the DuckDB
warehouse (ledger, results) and publishing; workers only read the warehouse (read-only
connections, which DuckDB allows from many processes) and write their own partner's paths:
its landing folders and ``<run>/work/<partner>.*``. So the landing zone (``REVSHARE_HOME``)
and the data folder must be one shared file system for every worker (docs/scaling.md).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows import extraction
from flows.partner import PartnerRun, process_partner
from revshare.config import Config, Settings
from revshare.periods import Period
from revshare.runs import RunPaths


class RunnerSettings(BaseSettings):
    """``REVSHARE_TASK_RUNNER``, ``REVSHARE_DASK_ADDRESS``, ``REVSHARE_DASK_WORKERS``."""

    model_config = SettingsConfigDict(env_prefix="REVSHARE_", extra="ignore")

    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    dask_workers: int = 2


@dataclass(frozen=True)
class Timed:
    """A partner's run, the seconds it took where it ran, and where (``pid@host``)."""

    run: PartnerRun
    seconds: float
    where: str


#: ``process_partner`` with every argument but the partner bound (``run_partners``).
Work = Callable[[str], PartnerRun]


def _timed(work: Work, pid: str) -> Timed:
    t0 = time.monotonic()
    run = work(pid)
    where = f"{os.getpid()}@{os.uname().nodename}"
    return Timed(run, round(time.monotonic() - t0, 3), where)


class Sealed:
    """A box Prefect's parameter walk treats as one opaque value.

    Task parameters are walked (to find futures) and rebuilt, on submit and again on the
    worker; for the config that is slow and breaks models with derived properties, and
    prefect-dask walks through ``quote`` too. A plain object is a leaf to that walk."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@task(name="partner", cache_policy=NO_CACHE)
def partner_task(pid: str, work: Sealed) -> Timed:
    """One partner's month as a task a Dask worker runs (its inner tasks run there too).
    ``work`` holds the bound ``process_partner``: the config inside must not be walked, and
    the arguments are named once, where they are bound."""
    return _timed(work.value, pid)


@contextmanager
def _dask(rs: RunnerSettings) -> Iterator[Any]:
    # Imported only when selected: the default path never loads Dask.
    from prefect_dask import DaskTaskRunner

    if rs.dask_address:
        runner = DaskTaskRunner(address=rs.dask_address)
    else:
        kwargs = {"n_workers": rs.dask_workers, "threads_per_worker": 1, "processes": True}
        runner = DaskTaskRunner(cluster_kwargs=kwargs)
    with runner:
        yield runner


def run_partners(
    partners: list[str],
    config: Config,
    settings: Settings,
    period: Period,
    paths: RunPaths,
    pull: extraction.Pull,
    rs: RunnerSettings | None = None,
) -> list[Timed]:
    """Every partner's month, in ``partners`` order whatever order they finish in."""
    rs = rs or RunnerSettings()
    # process_partner's arguments, bound once by name (the partner is the one left open).
    work: Work = functools.partial(
        process_partner, config=config, settings=settings, period=period, paths=paths, pull=pull
    )
    if rs.task_runner == "local":
        return [_timed(work, pid) for pid in partners]
    with _dask(rs) as runner:
        sealed = Sealed(work)
        futures = [runner.submit(partner_task, {"pid": pid, "work": sealed}) for pid in partners]
        runs = [f.result() for f in futures]
    log = get_run_logger()
    for pid, timed in zip(partners, runs, strict=True):
        log.info("%s: %.1f s on Dask worker process %s", pid, timed.seconds, timed.where)
    return runs
