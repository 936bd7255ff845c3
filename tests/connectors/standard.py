"""The standard connector suite: what every connector must do, checked the same way for all.

A connector's test module runs it with a few lines::

    from standard import ConnectorCase, StandardSuite

    class TestOci(StandardSuite):
        case = ConnectorCase(
            type="oci",
            settings={"path": "oci"},
            write=write_reports,          # (root, period) -> expected totals per currency
            period=Period(2023, 11),
            other_period=Period(2023, 12),
            spoil=put_text_in_my_cost,    # (root, period) -> None: makes the input bad
            bad_column="cost/myCost",
        )

The suite runs the connector the way the flow does (registry -> ``extract`` lands an immutable
snapshot -> ``normalize`` writes Parquet), on native input the case writes for two periods
into one folder, and checks: the output is exactly the canonical schema with required columns
filled; lineage columns are filled and point into the snapshot; only the asked period comes
out; extracting and normalizing again changes nothing (same snapshot, the same lines: canonical
lines have no order, see ``Connector.union_files``);
money ties exactly to the totals the case computed from its native input; bad input raises a
SourceError naming the file (and the column / row the case expects); an empty folder raises a
SourceError, not an OSError.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import build_connector, registry
from connectors.base import Connector, NormalizeContext
from revshare.config import SourceConfig
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.schema import (
    BILLING_REQUIRED,
    BILLING_SCHEMA,
    CATALOG_FILLED,
    STATEMENT_SCHEMA,
)
from revshare.stages import decode, extract, normalize

#: Money per currency, exact.
Totals = Mapping[str, Decimal]
PARTNER = "suite"


def in_one_order(table: pa.Table) -> pa.Table:
    """The rows sorted on every column, to compare two normalizations: canonical lines have
    no order (``Connector.union_files``). This module is also run by connector projects
    outside this repository, so it keeps its own copy of the tests' helper."""
    return table.sort_by([(c, "ascending") for c in table.column_names])


@dataclass(frozen=True)
class ConnectorCase:
    """What the suite needs to know about one connector; all paths are under one tmp root."""

    #: The source type, as config/partners.yaml names it (looked up in the registry).
    type: str
    #: The connector's settings; relative paths resolve against the tmp root (the data dir).
    settings: Mapping[str, Any]
    #: Writes native input for a period under the root; returns the exact money per currency
    #: the canonical rows must sum to (BilledCost for billing, ShareAmount for statements),
    #: computed from the native data, not from the connector.
    write: Callable[[Path, Period], Totals]
    period: Period
    other_period: Period
    #: Spoils the input written for ``period`` so that the connector must refuse it.
    spoil: Callable[[Path, Period], None]
    #: The column the SourceError must name for the spoiled input (None: any or none).
    bad_column: str | None = None
    #: The 1-based data row it must name (None: not checked).
    bad_row: int | None = None


@dataclass
class Run:
    """One period extracted and normalized, kept for the checks."""

    connector: Connector
    snapshot_id: str
    snapshot_dir: Path
    files: tuple[str, ...]
    out: Path
    table: pa.Table
    decoded: int = 0  # files read through their decoded Parquet copies


def _connector(case: ConnectorCase, root: Path, **extra: Any) -> Connector:
    src = SourceConfig(type=case.type, **{**case.settings, **extra})
    return build_connector(src, root, f"{PARTNER}/{case.type}")


def _run(case: ConnectorCase, root: Path, period: Period, tag: str, decoded: bool = False) -> Run:
    conn = _connector(case, root)
    snap = extract(conn, period, root / "landing" / str(period))
    ctx = NormalizeContext(PARTNER, period, snap.id, snap.dir, snap.files)
    if decoded:  # as the flow reads: text files parsed once into Parquet first
        ctx = decode(conn, ctx, root / "decoded" / f"{period}-{tag}")
    out = root / "out" / f"{period}-{tag}.parquet"
    normalize(conn, ctx, out)
    return Run(conn, snap.id, snap.dir, snap.files, out, pq.read_table(out), len(ctx.decoded))


def _totals(table: pa.Table, billing: bool) -> dict[str, Decimal]:
    money, ccy = ("BilledCost", "BillingCurrency") if billing else ("ShareAmount", "Currency")
    out: dict[str, Decimal] = {}
    for c, v in zip(table[ccy].to_pylist(), table[money].to_pylist(), strict=True):
        out[c] = out.get(c, Decimal(0)) + v
    return out


class StandardSuite:
    """Subclass as ``TestXxx`` and set ``case``; every test below then runs for it."""

    case: ClassVar[ConnectorCase]

    @pytest.fixture(scope="class")
    @classmethod
    def world(cls, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        """Native input for both periods in one folder, each period extracted and normalized
        once (the checks share it: a month of native data is not cheap to write)."""
        case = cls.case
        root = tmp_path_factory.mktemp(f"suite-{case.type}")
        expected = {
            case.period: dict(case.write(root, case.period)),
            case.other_period: dict(case.write(root, case.other_period)),
        }
        runs = {p: _run(case, root, p, "a") for p in expected}
        return {"root": root, "expected": expected, "runs": runs}

    @property
    def billing(self) -> bool:
        cls = registry().get(self.case.type)
        assert cls is not None
        return cls.capabilities.produces in ("billing", "usage")  # billing-schema output

    # -- registration -----------------------------------------------------------------------

    def test_registered_with_capabilities(self) -> None:
        reg = registry()
        assert self.case.type not in reg.problems, reg.problems.get(self.case.type)
        cls = reg.get(self.case.type)
        assert cls is not None, f"{self.case.type} is not registered"
        caps = cls.capabilities
        assert caps.produces in ("billing", "statement", "usage")
        assert caps.formats and all(isinstance(f, str) and f for f in caps.formats)
        assert caps.late_days >= 0
        assert sys.modules[cls.__module__].__doc__, "the connector module says what it reads"

    # -- output -----------------------------------------------------------------------------

    def test_output_conforms_to_the_canonical_schema(self, world: dict[str, Any]) -> None:
        schema = BILLING_SCHEMA if self.billing else STATEMENT_SCHEMA
        required = (
            [n for n in BILLING_REQUIRED if n not in CATALOG_FILLED]
            if self.billing
            else [f.name for f in STATEMENT_SCHEMA if not f.nullable]
        )
        for run in world["runs"].values():
            t = run.table
            assert [(f.name, f.type) for f in t.schema] == [(f.name, f.type) for f in schema]
            assert t.num_rows > 0, "the case must write rows for both periods"
            for name in required:
                assert t[name].null_count == 0, f"{name} has nulls"
            assert t.cast(schema).schema == schema

    def test_lineage_columns_are_filled(self, world: dict[str, Any]) -> None:
        for run in world["runs"].values():
            t = run.table
            assert set(t["x_SnapshotId"].to_pylist()) == {run.snapshot_id}
            assert set(t["x_SourceFile"].to_pylist()) <= set(run.files)
            rows = t["x_SourceRow"].to_pylist()
            assert min(rows) >= 1, "x_SourceRow is 1-based"
            pairs = list(zip(t["x_SourceFile"].to_pylist(), rows, strict=True))
            if self.billing:
                assert set(t["x_PartnerId"].to_pylist()) == {PARTNER}
                ids = t["x_NativeLineId"].to_pylist()
                assert len(set(ids)) == len(ids), "x_NativeLineId must be unique per snapshot"
                # One native row may expand into several lines (sub-ids), never the reverse.
                assert len(set(pairs)) <= len(pairs)
            else:
                assert len(set(pairs)) == len(pairs), "two lines claim one source row"

    def test_period_filter_is_respected(self, world: dict[str, Any]) -> None:
        for period, run in world["runs"].items():
            starts = set(run.table["BillingPeriodStart"].to_pylist())
            assert starts == {period.start}, f"{period}: rows of {starts - {period.start}}"

    def test_totals_tie_to_the_source(self, world: dict[str, Any]) -> None:
        for period, run in world["runs"].items():
            assert _totals(run.table, self.billing) == world["expected"][period], period

    def test_rereading_is_idempotent(self, world: dict[str, Any]) -> None:
        root: Path = world["root"]
        for period, first in world["runs"].items():
            again = _run(self.case, root, period, "b")
            assert again.snapshot_id == first.snapshot_id, "unchanged input, new snapshot"
            landed = [p for p in (root / "landing" / str(period)).iterdir()
                      if not p.name.startswith(".")]  # fmt: skip
            assert len(landed) == 1, f"landed twice: {landed}"
            assert in_one_order(again.table) == in_one_order(first.table), "lines differ on rerun"

    def test_decoded_copies_give_the_same_lines(self, world: dict[str, Any]) -> None:
        """The flow reads text files through their decoded Parquet copies (``decode_sql``):
        the canonical lines must be the same as from the landed files, row for row."""
        for period, first in world["runs"].items():
            again = _run(self.case, world["root"], period, "decoded", decoded=True)
            if type(again.connector).decode_sql is not Connector.decode_sql:
                assert again.decoded > 0, "decode_sql names files, yet none was decoded"
            assert in_one_order(again.table) == in_one_order(first.table), period

    # -- errors -----------------------------------------------------------------------------

    @pytest.mark.parametrize("decoded", [False, True], ids=["landed", "decoded"])
    def test_bad_input_raises_a_clear_error(self, tmp_path: Path, decoded: bool) -> None:
        root = tmp_path / "bad"
        root.mkdir()
        self.case.write(root, self.case.period)
        self.case.spoil(root, self.case.period)
        with pytest.raises(SourceError) as exc:
            _run(self.case, root, self.case.period, "bad", decoded=decoded)
        err = exc.value
        assert err.source == f"{PARTNER}/{self.case.type}"
        assert err.file, f"the error names no file: {err}"
        if self.case.bad_column is not None:
            assert err.column == self.case.bad_column, str(err)
        if self.case.bad_row is not None:
            assert err.row == self.case.bad_row, str(err)

    def test_empty_source_is_a_source_error(self, tmp_path: Path) -> None:
        root = tmp_path / "empty"
        root.mkdir()
        self.case.write(root, self.case.period)
        # Same settings, but every folder the case wrote is emptied.
        for p in sorted(root.iterdir()):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            if p.is_dir():
                p.mkdir()
        with pytest.raises(SourceError):
            _run(self.case, root, self.case.period, "empty")
