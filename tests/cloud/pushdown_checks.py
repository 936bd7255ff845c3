"""What a pushdown run must give, whatever the warehouse: the full pull's figures.

Shared by the Snowflake and BigQuery pushdown tests, which each run the flow twice on one
seeded month (every row pulled, then ``pushdown: true``) and compare the two runs' results.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from conftest import in_one_order

REPO = Path(__file__).resolve().parents[2]

#: The lines behind a discrepancy name the pull they came from: another pull, other lineage.
LINEAGE = ("snapshot_id", "source_file", "source_row", "line_id")


def assert_pushdown_equals_full_pull(
    full: Path, push: Path, data: Path, partner: str, *, same_order: bool
) -> None:
    """``full`` and ``push`` are the two runs' ``results/`` folders; ``data`` the generated
    month (its ground truth). ``same_order``: the lines behind come in the same order too
    (when their lineage sorts them alike in both pulls)."""
    # The full pull finds the partner's planted discrepancies, and nothing else.
    truth = json.loads((data / "ground_truth.json").read_text())["discrepancies"]
    planted = {(d["type"], d["model"]) for d in truth if d["partner"] == partner}
    found = pq.read_table(full / "discrepancies.parquet").to_pylist()
    assert {(d["type"], d["model_id"]) for d in found} == planted and len(planted) >= 2
    # Every column equal, billing line counts included; only the billing snapshot differs:
    # the warehouse-side sums are another delivery, landed as a snapshot of their own.
    for name in ("reconciliation.parquet", "discrepancies.parquet"):
        a, b = pq.read_table(full / name), pq.read_table(push / name)
        assert a.schema == b.schema and a.num_rows == b.num_rows, name
        snaps = {*a["billing_snapshot"].to_pylist(), *b["billing_snapshot"].to_pylist()} - {None}
        assert len(snaps) == 2, name
        assert a.drop_columns(["billing_snapshot"]).equals(b.drop_columns(["billing_snapshot"]))
    a = pq.read_table(full / "discrepancy_lines.parquet").drop_columns(list(LINEAGE))
    b = pq.read_table(push / "discrepancy_lines.parquet").drop_columns(list(LINEAGE))
    assert a.num_rows > 0 and a.schema == b.schema
    assert a.equals(b) if same_order else in_one_order(a).equals(in_one_order(b))


def config_with_billing(tmp: Path, partner: str, billing: dict, pushdown: bool) -> Path:
    """The repository's config with ``partner``'s billing source replaced by ``billing``
    (a live warehouse) and ``pushdown`` set; one folder per choice of ``pushdown``."""
    out = tmp / f"config-{pushdown}"
    shutil.copytree(REPO / "config", out)
    doc = yaml.safe_load((out / "partners.yaml").read_text())
    doc["partners"][partner]["billing"] = {**billing, "pushdown": pushdown}
    (out / "partners.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
