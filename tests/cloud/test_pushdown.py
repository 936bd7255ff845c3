"""Warehouse pushdown against a real fakesnow server, through the whole Prefect flow.

The generator's Snowflake month (with its planted discrepancies) is seeded into fakesnow's
views; the flow reconciles the partner twice from the live account, once pulling every row and
once with ``pushdown: true`` (Cortex usage summed in the warehouse, then only the rows behind
the discrepancies). The reconciliation and discrepancy files must be byte-identical, the lines
behind equal but for their lineage (they come from another pull), and the pushdown must pull
fewer rows. The counts each way are printed (``-s``) for docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from snowflake.connector import errors as sf

from revshare.config import load_config
from revshare.generate import generate
from revshare.periods import Period
from tests.cloud.pushdown_checks import assert_pushdown_equals_full_pull, config_with_billing
from tests.cloud.test_snowflake import FakeSnow, _sf_type

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PERIOD = "2026-10"
ACCOUNT, REGION = "ORG1.ACME_PROD", "AWS_US_WEST_2"
PASSWORD_ENV = "REVSHARE_TEST_SF_PASSWORD"
VIEWS = {
    "CORTEX_FUNCTIONS_USAGE_HISTORY": "ACCOUNT_USAGE",
    "USAGE_IN_CURRENCY_DAILY": "ORGANIZATION_USAGE",
    "RATE_SHEET_DAILY": "ORGANIZATION_USAGE",
}


def _seed(con: Any, unload: Path) -> int:
    """The generator's unload as the three views of one account and region (the pull reads
    one; the generator's two regions share their prices and the contract does not key by
    region); the Cortex view without the two columns the pull adds. Returns its row count."""
    cur = con.cursor()
    for name, value in (("CURRENT_ACCOUNT", ACCOUNT), ("CURRENT_REGION", REGION)):
        with contextlib.suppress(sf.ProgrammingError):  # fakesnow: runs it, then errors
            cur.execute(f"CREATE FUNCTION {name}() RETURNS VARCHAR AS '{value}'")
    cur.execute('CREATE DATABASE IF NOT EXISTS "SNOWFLAKE"')
    for schema in set(VIEWS.values()):
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "SNOWFLAKE"."{schema}"')
    cortex = 0
    for view, schema in VIEWS.items():
        data = pa.concat_tables(pq.read_table(f) for f in sorted(unload.glob(f"{view}/*.parquet")))
        if view == "CORTEX_FUNCTIONS_USAGE_HISTORY":
            data, cortex = data.drop_columns(["ACCOUNT_LOCATOR", "REGION"]), data.num_rows
        elif view == "RATE_SHEET_DAILY":  # the generator prices both regions alike
            data = data.filter(pc.equal(data["REGION"], REGION))
        else:  # one account and region: the whole month, as the generator's statement saw it
            data = data.set_column(
                data.schema.get_field_index("REGION"), "REGION", pa.array([REGION] * len(data))
            )
        fqn = f'"SNOWFLAKE"."{schema}"."{view}"'
        cols = ", ".join(f'"{f.name}" {_sf_type(f.type)}' for f in data.schema)
        cur.execute(f"CREATE OR REPLACE TABLE {fqn} ({cols})")
        # One INSERT per chunk of literal rows: fakesnow runs executemany row by row.
        for i in range(0, data.num_rows, 500):
            chunk = data.slice(i, 500).to_pylist()
            values = ", ".join("(" + ", ".join(_lit(v) for v in r.values()) + ")" for r in chunk)
            cur.execute(f"INSERT INTO {fqn} VALUES {values}")
    return cortex


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    return "'" + str(v).replace("'", "''") + "'"


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeSnow, Path, int]]:
    data = tmp_path_factory.mktemp("data")
    generate(load_config(REPO / "config"), Period.parse(PERIOD), data, rows=1500)
    srv = FakeSnow(tmp_path_factory.mktemp("fakesnow"))
    try:
        srv.start()
        with srv.client() as con:
            cortex = _seed(con, data / "snowflake" / "usage" / PERIOD)
        yield srv, data, cortex
    finally:
        srv.stop()


def _config(tmp: Path, port: int, pushdown: bool) -> Path:
    """The repository's config with Snowflake's billing pulled from the fakesnow account."""
    billing = {
        "type": "snowflake_usage",
        "account": "fakesnow",
        "user": "revshare_reader",
        "password_env": PASSWORD_ENV,
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
    }
    return config_with_billing(tmp, "snowflake", billing, pushdown)


def _landed_rows(home: Path, kind: str) -> dict[str, int]:
    """Rows landed per view under ``kind`` (billing, or billing_lines)."""
    out: dict[str, int] = dict.fromkeys(VIEWS, 0)
    for view in VIEWS:
        files = (home / "landing" / "snowflake" / kind / PERIOD).glob(f"*/*/{view}/*.parquet")
        out[view] += sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return out


def test_pushdown_equals_full_pull(
    month: tuple[FakeSnow, Path, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api,
) -> None:
    srv, data, seeded = month
    monkeypatch.setenv(PASSWORD_ENV, "any")
    monkeypatch.setenv("REVSHARE_DATA_DIR", str(data))
    from flows.reconcile import reconcile_period

    runs = {}
    for pushdown in (False, True):
        monkeypatch.setenv("REVSHARE_CONFIG_DIR", str(_config(tmp_path, srv.port, pushdown)))
        monkeypatch.setenv("REVSHARE_HOME", str(tmp_path / f"home-{pushdown}"))
        summary = reconcile_period(period=PERIOD, partners=["snowflake"], dry_run=True)
        assert summary["status"] == "completed", summary
        runs[pushdown] = Path(summary["report"]).parent / "results"
        # Validated like any delivery, and as clean (LINE_COUNT is not taken for drift).
        manifest = json.loads((runs[pushdown].parent / "run.json").read_text())
        (checked,) = [v for v in manifest["validation"] if v["source"] == "snowflake/billing"]
        assert checked["clean"] and checked["warnings"] == 0, checked["reason"]

    assert_pushdown_equals_full_pull(runs[False], runs[True], data, "snowflake", same_order=True)

    full_rows = _landed_rows(tmp_path / "home-False", "billing")
    grain = _landed_rows(tmp_path / "home-True", "billing")
    behind = _landed_rows(tmp_path / "home-True", "billing_lines")
    print(f"\nrows pulled per view: full {full_rows}; pushdown grain {grain} + "
          f"lines behind {behind}")  # fmt: skip
    cortex = "CORTEX_FUNCTIONS_USAGE_HISTORY"
    assert full_rows[cortex] == seeded
    assert 0 < grain[cortex] < seeded and 0 < behind[cortex] < seeded
    assert sum(grain.values()) + sum(behind.values()) < sum(full_rows.values())


@pytest.mark.unit
def test_line_counts_weigh_aggregated_rows(tmp_path: Path) -> None:
    """billing_lines counts the native lines behind each grain row: an aggregated row counts
    its weight, an unweighted row one, lines of uncounted categories none."""
    from revshare.pushdown import line_counts

    billing = tmp_path / "billing.parquet"
    pq.write_table(
        pa.table({
            "x_SourceFile": ["c", "c", "d", "d", "c"],
            "x_SourceRow": [1, 2, 1, 2, 3],
            "x_SkuKey": ["m1", "m1", "m1", "odd", "m1"],
            "x_ModelId": ["llama", "llama", "llama", None, "llama"],
            "x_Unit": ["tokens", "tokens", "tokens", None, "tokens"],
            "RegionId": ["r1", "r2", "r1", "r1", "r1"],
            "x_CatalogStatus": ["mapped", "mapped", "mapped", "unmapped", "mapped"],
            "ChargeCategory": ["Usage", "Usage", "Usage", "Usage", "Tax"],
        }),
        billing,
    )  # fmt: skip
    weights = (
        "SELECT * FROM (VALUES ('c', 1, 40), ('c', 2, 2), ('c', 3, 9)) w(src_file, src_row, n)"
    )
    grain = pa.table({
        "discrepancy_id": ["a", "b", "c"],
        "type": ["matched", "unmapped_sku", "minimum_guarantee"],
        "model_id": ["llama", None, None], "unit": ["tokens", None, None],
        "sku": [None, "odd", None], "region": pa.array([None, None, None], pa.string()),
        "billing_lines": pa.array([3, 1, None], pa.int64()),
    })  # fmt: skip
    out = line_counts(grain, billing, weights, ["Usage"], by_region=False)
    assert out.schema == grain.schema
    assert out["billing_lines"].to_pylist() == [43, 1, None]
    by_region = grain.set_column(5, "region", pa.array(["r1", None, None], pa.string()))
    out = line_counts(by_region, billing, weights, ["Usage"], by_region=True)
    assert out["billing_lines"].to_pylist() == [41, 1, None]
