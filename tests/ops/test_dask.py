"""Partners fanned out to a real local Dask cluster (2 worker processes) through prefect-dask
give byte-identical result files to the in-process run of the same inputs, and the partners
really ran in the workers, not in the flow's process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
RESULTS = (
    "reconciliation.parquet",
    "reconciliation.csv",
    "discrepancies.parquet",
    "discrepancies.csv",
    "discrepancy_lines.parquet",
)


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch):
    from distributed import LocalCluster

    # Workers import the project's modules by name (cloudpickle pickles functions by
    # reference), as a real cluster's workers would from the installed image.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


def test_dask_run_equals_in_process_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api, cluster
) -> None:
    from distributed import Client

    monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(tmp_path / "data"))
    generate(load_config(REPO / "config"), Period.parse(PERIOD), tmp_path / "data", rows=400)
    from flows.reconcile import reconcile_period

    # The same inputs, two homes (each run lands and records in its own), in-process first.
    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "local"))
    monkeypatch.delenv("REVSHARE_TASK_RUNNER", raising=False)
    local = reconcile_period(period=PERIOD)

    monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / "dask"))
    monkeypatch.setenv("REVSHARE_TASK_RUNNER", "dask")
    monkeypatch.setenv("REVSHARE_DASK_ADDRESS", cluster.scheduler_address)
    dask = reconcile_period(period=PERIOD)

    assert local["status"] == dask["status"] == "completed"
    for name in RESULTS:
        a = (Path(local["report"]).parent / "results" / name).read_bytes()
        b = (Path(dask["report"]).parent / "results" / name).read_bytes()
        assert a == b, f"{name} differs between the in-process and the Dask run"

    # Every partner ran as a task on the cluster (so in a worker process): the scheduler's
    # cumulative count of partner tasks that finished (reached memory).
    with Client(cluster.scheduler_address) as client:
        finished = client.run_on_scheduler(
            lambda dask_scheduler: {
                name: p.state_counts.get("memory", 0)
                for name, p in dask_scheduler.task_prefixes.items()
            }
        )
    assert finished.get("partner_task") == len(local["partners"]) >= 4, finished
