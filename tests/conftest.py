"""Shared fixtures. Prefect runs against a temporary local API (one per test session), with
its home inside the test's temporary folder, so tests never touch a user's Prefect."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[1]
#: The public sample data shipped beside the repository (``../shared/data``).
SHARED_DATA = Path(os.environ.get("REVSHARE_SHARED_DATA", REPO.parent / "shared" / "data"))


def in_one_order(table: pa.Table) -> pa.Table:
    """The rows sorted on every column, to compare two reads of lines that have no order of
    their own (canonical lines: ``Connector.union_files``)."""
    return table.sort_by([(c, "ascending") for c in table.column_names])


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # As the CLI does (revshare/cli.py): no import of every collection at server start.
    os.environ.setdefault("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "false")
    os.environ.setdefault("PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
