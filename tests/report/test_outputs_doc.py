"""docs/outputs.md is the schema of every Parquet file and warehouse table: it must name every
column, in order, with its type, or this test fails."""

from __future__ import annotations

import re

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.report.conftest import REPO, Runs

pytestmark = pytest.mark.integration
MIRRORED = ("reconciliation", "discrepancy_lines", "statement_revisions", "restatement_diff")


def _documented() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in (REPO / "docs" / "outputs.md").read_text().splitlines():
        m = re.match(r"### `([^`]+)`$", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current and line.startswith("| ") and not line.startswith(("| column", "| ---")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[current].append((cells[0], cells[1]))
    return out


def _arrow(t: object) -> str:
    s = str(t).replace("decimal128", "decimal").replace("[day]", "").replace(", ", ",")
    return s


def test_every_parquet_file_and_table_is_documented(runs: Runs) -> None:
    doc = _documented()
    for path in sorted((runs.run_dir / "results").glob("*.parquet")):
        key = f"results/{path.name}"
        assert key in doc, f"{key} is not documented in docs/outputs.md"
        schema = pq.read_schema(path)
        assert doc[key] == [(n, _arrow(t)) for n, t in zip(schema.names, schema.types,
                                                           strict=True)], key  # fmt: skip
    con = duckdb.connect(str(runs.root / "home" / "warehouse.duckdb"), read_only=True)
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]  # fmt: skip
    for table in tables:
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()  # fmt: skip
        if table in MIRRORED:
            parquet = doc[f"results/{table}.parquet"]
            assert [c[0] for c in cols] == ["run_id", *(n for n, _ in parquet)], table
        else:
            assert table in doc, f"warehouse table {table} is not documented"
            assert doc[table] == [(n, t) for n, t in cols], table
    con.close()
