"""Data-quality suites through the GX adapter, on Parquet written with the canonical schemas.

GX's import costs seconds, so one module-scoped fixture imports the adapter once; each validation
after that is well under a second on these small tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from revshare.quality import CheckResult, ValidationReport
from revshare.schema import (
    BILLING_REQUIRED,
    BILLING_SCHEMA,
    CHARGE_CATEGORIES,
    STATEMENT_COLUMNS,
    STATEMENT_SCHEMA,
    TOKEN_UNITS,
)

pytestmark = pytest.mark.integration

UTC = UTC
P_START = datetime(2026, 10, 1, tzinfo=UTC)
P_END = datetime(2026, 11, 1, tzinfo=UTC)
LATE = P_START - timedelta(days=3)
PARTNER = "acme-models"
MODELS = ["acme-large-2", "acme-small-1"]
BILLING_PARAMS: dict[str, object] = {
    "period_start": P_START,
    "period_end": P_END,
    "late_window_start": LATE,
    "partner_id": PARTNER,
}
STATEMENT_PARAMS: dict[str, object] = {
    "period_start": P_START,
    "partner_id": PARTNER,
    "model_ids": MODELS,
}
SUITES = Path(__file__).resolve().parents[1] / "expectations"


@pytest.fixture(scope="module")
def adapter() -> ModuleType:
    from expectations import adapter as mod

    mod._gx()  # pay the GX import once for the module
    return mod


# --- tables -------------------------------------------------------------------------------


def billing_columns() -> dict[str, list[Any]]:
    """Five clean lines, including the edge cases that must pass: a late row 3 days before the
    period, a Credit with negative quantity (only Usage must be >= 0) and a Tax line."""
    n = 5
    cols: dict[str, list[Any]] = {f.name: [None] * n for f in BILLING_SCHEMA}
    cols.update(
        BilledCost=[
            Decimal("1.000000000001"),
            Decimal("2.5"),
            Decimal("-0.5"),
            Decimal("0.2"),
            Decimal("3"),
        ],
        BillingAccountId=["acct-1"] * n,
        BillingCurrency=["USD", "USD", "USD", "USD", "EUR"],
        BillingPeriodStart=[P_START] * n,
        BillingPeriodEnd=[P_END] * n,
        ChargeCategory=["Usage", "Usage", "Credit", "Tax", "Usage"],
        ChargePeriodStart=[P_START, LATE, P_START, P_START, P_END - timedelta(hours=1)],
        ChargePeriodEnd=[P_START + timedelta(hours=1)] * n,
        ConsumedQuantity=[Decimal(1000), Decimal(0), Decimal(-5), None, Decimal("0.5")],
        ProviderName=["AWS"] * n,
        ServiceName=["Bedrock"] * n,
        x_PartnerId=[PARTNER] * n,
        x_SkuKey=["USE1-acme-large-2-input-tokens"] * 4 + ["TAX"],
        x_NativeLineId=["l1", "l2", "l3", "l4", "l5"],
        x_SnapshotId=["snap-1"] * n,
        x_SourceFile=["a.parquet"] * 3 + ["b.parquet"] * 2,
        x_SourceRow=[1, 2, 3, 1, 2],
    )
    return cols


def statement_columns() -> dict[str, list[Any]]:
    n = 3
    return {
        "StatementId": ["st-1"] * n,
        "Revision": [1] * n,
        "IssuedDate": [P_END.date()] * n,
        "x_PartnerId": [PARTNER] * n,
        "BillingPeriodStart": [P_START] * n,
        "x_ModelId": ["acme-large-2", "acme-large-2", "acme-small-1"],
        "RegionId": ["us-east-1", None, "eu-west-1"],
        "x_Unit": ["input_tokens", "output_tokens", "tokens"],
        "x_Tokens": [Decimal(1_000_000), Decimal(0), Decimal(5)],
        "GrossRevenue": [Decimal("3.000000000000"), Decimal(0), Decimal("0.01")],
        "ShareRate": [Decimal("0.2"), Decimal(0), Decimal(1)],
        "ShareAmount": [Decimal("0.6"), Decimal(0), Decimal("0.01")],
        "Currency": ["USD"] * n,
        "x_UnitPrice": [None] * n,
        "x_Quantity": [Decimal(1)] * n,
        "x_StatementTotalShare": [None] * n,
        "x_SnapshotId": ["snap-s"] * n,
        "x_SourceFile": ["statement.csv"] * n,
        "x_SourceRow": [1, 2, 3],
    }


def write(tmp_path: Path, cols: dict[str, list[Any]], schema: pa.Schema, name: str) -> Path:
    """Write with the exact schema; a column holding nulls is relaxed to nullable (as DuckDB's
    Parquet output is), since Arrow refuses nulls in a non-nullable field."""
    fields = [f.with_nullable(True) if None in cols[f.name] else f for f in schema]
    table = pa.table(cols, schema=pa.schema(fields))
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    return path


def labels(report: ValidationReport) -> set[str]:
    """Labels of the blocking failures (warnings, e.g. the late row every table has, aside)."""
    return {c.label for c in report.blocking}


# --- suites agree with the schema (no GX needed) ------------------------------------------


def _not_null(suite: dict[str, Any]) -> set[str]:
    return {
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }


def _set_of(suite: dict[str, Any], column: str) -> set[str]:
    (exp,) = [
        e
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == column
    ]
    return set(exp["kwargs"]["value_set"])


def _columns_used(suite: dict[str, Any]) -> set[str]:
    used = set()
    for e in suite["expectations"]:
        kw = e["kwargs"]
        used |= {kw["column"]} if "column" in kw else set(kw.get("column_list", []))
        used |= set(e.get("meta", {}).get("column", "").split(",")) - {""}
    return used


def test_billing_suite_agrees_with_schema() -> None:
    suite = json.loads((SUITES / "canonical_billing.json").read_text())
    assert _not_null(suite) == set(BILLING_REQUIRED)
    assert _set_of(suite, "ChargeCategory") == set(CHARGE_CATEGORIES)
    assert _columns_used(suite) <= set(BILLING_SCHEMA.names)


def test_statement_suite_agrees_with_schema() -> None:
    suite = json.loads((SUITES / "statements.json").read_text())
    assert _not_null(suite) == {c.name for c in STATEMENT_COLUMNS if not c.nullable}
    assert _set_of(suite, "x_Unit") == set(TOKEN_UNITS)
    assert _columns_used(suite) <= set(STATEMENT_SCHEMA.names)


def test_suite_parameters_declared(adapter: ModuleType) -> None:
    names = adapter.suite_parameter_names
    assert names(adapter.load_suite("canonical_billing")) == set(BILLING_PARAMS)
    assert names(adapter.load_suite("statements")) == set(STATEMENT_PARAMS)


# --- canonical billing ----------------------------------------------------------------------


def test_clean_billing_passes(adapter: ModuleType, tmp_path: Path) -> None:
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    assert pq.read_schema(path) == BILLING_SCHEMA  # really the exact canonical schema
    report = adapter.validate_parquet(
        path, "canonical_billing", source="aws/2026-10/snap-1", params=BILLING_PARAMS
    )
    assert report.success, report.reason()
    assert not report.errored and report.rows == 5
    assert len(report.checks) == len(adapter.load_suite("canonical_billing")["expectations"])
    # The late row (3 days before the period, inside the late window) is flagged, not blocked.
    assert [c.check for c in report.warnings] == ["late_rows"]
    assert "the 28 checks of suite canonical_billing passed with 1 warning(s): late_rows" in (
        report.reason()
    )
    json.dumps(report.to_dict())  # JSON-ready


def _set(col: str, i: int, value: Any) -> Callable[[dict[str, list[Any]]], None]:
    def mutate(cols: dict[str, list[Any]]) -> None:
        cols[col][i] = value

    return mutate


BILLING_BREAKS = {
    "null_required": (
        _set("BillingAccountId", 1, None),
        "expect_column_values_to_not_be_null(BillingAccountId)",
    ),
    "null_skukey": (_set("x_SkuKey", 0, None), "expect_column_values_to_not_be_null(x_SkuKey)"),
    "lower_currency": (
        _set("BillingCurrency", 2, "usd"),
        "unexpected_rows_expectation(BillingCurrency)",
        "expect_column_values_to_be_in_set(BillingCurrency)",
    ),
    "long_currency": (
        _set("BillingCurrency", 2, "USDX"),
        "unexpected_rows_expectation(BillingCurrency)",
        "expect_column_values_to_be_in_set(BillingCurrency)",
    ),
    "unknown_currency": (
        _set("BillingCurrency", 2, "ABC"),
        "expect_column_values_to_be_in_set(BillingCurrency)",
    ),
    "bad_category": (
        _set("ChargeCategory", 0, "Refund"),
        "expect_column_values_to_be_in_set(ChargeCategory)",
    ),
    "before_late_window": (
        _set("ChargePeriodStart", 0, LATE - timedelta(seconds=1)),
        "expect_column_values_to_be_between(ChargePeriodStart)",
    ),
    "at_period_end": (
        _set("ChargePeriodStart", 0, P_END),
        "expect_column_values_to_be_between(ChargePeriodStart)",
    ),
    "other_billing_period": (
        _set("BillingPeriodStart", 4, P_END),
        "expect_column_values_to_be_between(BillingPeriodStart)",
    ),
    "other_partner": (
        _set("x_PartnerId", 3, "someone-else"),
        "expect_column_values_to_be_in_set(x_PartnerId)",
    ),
    "duplicate_line_id": (
        _set("x_NativeLineId", 1, "l1"),
        "unexpected_rows_expectation(x_SnapshotId,x_NativeLineId)",
    ),
    "negative_usage": (
        _set("ConsumedQuantity", 4, Decimal("-0.000000000001")),
        "unexpected_rows_expectation(ConsumedQuantity)",
    ),
    "row_zero": (_set("x_SourceRow", 0, 0), "expect_column_values_to_be_between(x_SourceRow)"),
}


@pytest.mark.parametrize("case", sorted(BILLING_BREAKS))
def test_broken_billing_fails_naming_the_check(
    adapter: ModuleType, tmp_path: Path, case: str
) -> None:
    mutate, *expected = BILLING_BREAKS[case]
    cols = billing_columns()
    mutate(cols)
    path = write(tmp_path, cols, BILLING_SCHEMA, case)
    report = adapter.validate_parquet(
        path, "canonical_billing", source=f"test/{case}", params=BILLING_PARAMS
    )
    assert not report.success and not report.errored
    assert labels(report) == set(expected), report.reason()
    assert f"test/{case}" in report.reason()
    for failure in report.blocking:
        assert failure.check in report.reason()
        assert failure.unexpected_count == 1  # one bad row, or one duplicated key


def test_failure_sample_names_the_bad_value(adapter: ModuleType, tmp_path: Path) -> None:
    cols = billing_columns()
    cols["BillingCurrency"][0] = "usd"
    cols["ChargeCategory"][1] = "Refund"
    path = write(tmp_path, cols, BILLING_SCHEMA, "two")
    report = adapter.validate_parquet(path, "canonical_billing", source="s", params=BILLING_PARAMS)
    assert len(report.blocking) == 3  # lower-case currency fails format and ISO 4217
    # Column checks carry a sample of bad values; query checks (the currency regex) only a
    # count, as GX's SUMMARY result format returns no rows for them.
    assert "charge_category(ChargeCategory) 1 unexpected, e.g. Refund;" in report.reason()
    assert "currency_iso4217(BillingCurrency) 1 unexpected, e.g. usd" in report.reason()
    # Query checks get their sample rows from DuckDB (GX's SUMMARY has only a count).
    (fmt,) = [c for c in report.blocking if c.check == "currency_format"]
    assert fmt.sample_rows and fmt.sample_rows[0]["BillingCurrency"] == "usd"
    assert fmt.sample_rows[0]["x_NativeLineId"] == "l1"


def test_failure_sample_rows_do_not_depend_on_file_order(
    adapter: ModuleType, tmp_path: Path
) -> None:
    """Canonical files are written without insertion order, so the same lines come in another
    order on a rerun; the sample of a failed query check must be the same rows either way:
    the first offending rows by file and row."""
    base = billing_columns()
    cols = {k: v + v for k, v in base.items()}  # ten lines, every one with a bad currency
    cols["BillingCurrency"] = ["usd"] * 10
    cols["x_NativeLineId"] = [f"l{i}" for i in range(10)]
    cols["x_SourceRow"] = [*base["x_SourceRow"], *(r + 10 for r in base["x_SourceRow"])]
    table = pa.table(cols, schema=pa.schema([f.with_nullable(True) for f in BILLING_SCHEMA]))
    samples = []
    for name, order in (("forward", range(10)), ("shuffled", [7, 2, 9, 0, 5, 3, 8, 1, 6, 4])):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table.take(list(order)), path, row_group_size=3)
        report = adapter.validate_parquet(
            path, "canonical_billing", source="s", params=BILLING_PARAMS
        )
        (fmt,) = [c for c in report.blocking if c.check == "currency_format"]
        assert fmt.unexpected_count == 10
        samples.append(fmt.sample_rows)
    assert samples[0] == samples[1]
    # a.parquet rows 1, 2, 3, 11, 12 (the first five by file and row); b.parquet's come after.
    assert [(r["x_SourceFile"], r["x_SourceRow"]) for r in samples[0]] == [
        ("a.parquet", "1"), ("a.parquet", "2"), ("a.parquet", "3"),
        ("a.parquet", "11"), ("a.parquet", "12"),
    ]  # fmt: skip


def test_missing_parameter_is_refused(adapter: ModuleType, tmp_path: Path) -> None:
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    params = {k: v for k, v in BILLING_PARAMS.items() if k != "partner_id"}
    with pytest.raises(ValueError, match="partner_id"):
        adapter.validate_parquet(path, "canonical_billing", source="s", params=params)


# --- statements --------------------------------------------------------------------------------


def test_clean_statement_passes(adapter: ModuleType, tmp_path: Path) -> None:
    path = write(tmp_path, statement_columns(), STATEMENT_SCHEMA, "st")
    report = adapter.validate_parquet(path, "statements", source="st", params=STATEMENT_PARAMS)
    assert report.success, report.reason()


def test_broken_statement_fails_each_check(adapter: ModuleType, tmp_path: Path) -> None:
    # Several breaks in one file (each on its own column) keep this to one GX run.
    cols = statement_columns()
    cols["ShareRate"][0] = Decimal("1.5")
    cols["x_ModelId"][1] = "not-licensed"
    cols["x_Unit"][2] = "characters"
    cols["Currency"][0] = "US"
    cols["x_Tokens"][1] = Decimal(-1)
    cols["GrossRevenue"][2] = Decimal("-0.01")
    cols["x_PartnerId"][0] = "other"
    cols["BillingPeriodStart"][1] = LATE
    cols["StatementId"][2] = None
    path = write(tmp_path, cols, STATEMENT_SCHEMA, "bad_st")
    report = adapter.validate_parquet(path, "statements", source="st", params=STATEMENT_PARAMS)
    assert not report.errored
    assert labels(report) == {
        "expect_column_values_to_be_between(ShareRate)",
        "expect_column_values_to_be_in_set(x_ModelId)",
        "expect_column_values_to_be_in_set(x_Unit)",
        "unexpected_rows_expectation(Currency)",
        "expect_column_values_to_be_in_set(Currency)",
        "expect_column_values_to_be_between(x_Tokens)",
        "expect_column_values_to_be_between(GrossRevenue)",
        "expect_column_values_to_be_in_set(x_PartnerId)",
        "expect_column_values_to_be_between(BillingPeriodStart)",
        "expect_column_values_to_not_be_null(StatementId)",
    }, report.reason()


# --- errors are errors, not data failures -------------------------------------------------


def test_check_that_cannot_run_is_errored(adapter: ModuleType, tmp_path: Path) -> None:
    # GX's own regex expectation has no DuckDB dialect: it errors inside GX without raising.
    suite = {
        "name": "probe",
        "expectations": [
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "BillingCurrency", "regex": "^[A-Z]{3}$"},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "NoSuchColumn"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "BilledCost"}},
        ],
    }
    (tmp_path / "probe.json").write_text(json.dumps(suite))
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    report = adapter.validate_parquet(path, "probe", source="s", params={}, suites_dir=tmp_path)
    regex, missing, ok = report.checks
    assert regex.errored and not regex.success and regex.unexpected_count is None
    assert "duckdb" in regex.message.lower()
    assert missing.errored and not missing.success
    assert ok.success and not ok.errored
    assert report.errored and not report.success
    assert "errored" in report.reason()


def test_duckdb_workaround_in_place_and_needed(
    adapter: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from great_expectations.execution_engine import sqlalchemy_execution_engine as engine

    assert adapter.DUCKDB_DIALECT in engine._PERSISTED_CONNECTION_DIALECTS
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    # Without the workaround every check errors (silently, inside GX). If this starts passing,
    # GX fixed the trap and the workaround can go; if it fails as data, our errored detection
    # broke.
    without = tuple(d for d in engine._PERSISTED_CONNECTION_DIALECTS if d != "duckdb")
    monkeypatch.setattr(engine, "_PERSISTED_CONNECTION_DIALECTS", without)
    report = adapter.validate_parquet(path, "canonical_billing", source="s", params=BILLING_PARAMS)
    assert report.errored and not report.success
    assert all(c.errored and not c.success for c in report.checks)
    # Re-applying is idempotent and restores a passing run.
    adapter.apply_duckdb_workaround(engine)
    adapter.apply_duckdb_workaround(engine)
    assert sum(d == "duckdb" for d in engine._PERSISTED_CONNECTION_DIALECTS) == 1
    report = adapter.validate_parquet(path, "canonical_billing", source="s", params=BILLING_PARAMS)
    assert report.success, report.reason()


def test_report_without_checks_is_not_success() -> None:
    empty = ValidationReport(suite="s", source="x", rows=0, checks=())
    assert not empty.success
    bad = CheckResult(
        "e",
        "c",
        success=False,
        errored=False,
        unexpected_count=2,
        unexpected_sample=["a"],
        message="",
    )
    report = ValidationReport(suite="s", source="x", rows=3, checks=(bad,))
    assert (
        report.reason()
        == "x: 1 of 1 checks of suite s did not pass over 3 rows: e(c) 2 unexpected, e.g. a."
    )
    warn = CheckResult("e", "c", False, False, 2, ["a"], "", check="late", severity="warn")
    report = ValidationReport(suite="s", source="x", rows=3, checks=(warn,))
    assert report.success and not report.clean and report.warnings == (warn,)
    assert report.reason() == (
        "x: the 1 checks of suite s passed with 1 warning(s): late(c) 2 unexpected, e.g. a."
    )


# --- Data Docs and scale ------------------------------------------------------------------


def test_data_docs_are_built_on_request(adapter: ModuleType, tmp_path: Path) -> None:
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    docs = tmp_path / "docs"
    t0 = time.perf_counter()
    report = adapter.validate_parquet(
        path, "canonical_billing", source="s", params=BILLING_PARAMS, data_docs_dir=docs
    )
    print(f"\nvalidation + data docs: {time.perf_counter() - t0:.2f}s")
    assert report.success, report.reason()
    index = docs / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.is_file()
    assert "canonical_billing" in index.read_text()


def _big_billing(n: int) -> pa.Table:
    """n clean lines, built column-wise (no per-row Python)."""
    ids = pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string())
    ts = pa.array(np.full(n, np.datetime64(P_START.replace(tzinfo=None), "us"))).cast(
        pa.timestamp("us", tz="UTC")
    )
    end = pa.array(np.full(n, np.datetime64(P_END.replace(tzinfo=None), "us"))).cast(
        pa.timestamp("us", tz="UTC")
    )
    qty = pc.cast(pa.array(np.arange(n, dtype=np.int64) % 1000), pa.decimal128(38, 12))

    def const(v: str) -> pa.Array:
        return pa.repeat(pa.scalar(v), n)

    filled: dict[str, pa.Array] = {
        "BilledCost": qty,
        "ConsumedQuantity": qty,
        "BillingAccountId": const("acct-1"),
        "BillingCurrency": const("USD"),
        "BillingPeriodStart": ts,
        "BillingPeriodEnd": end,
        "ChargeCategory": const("Usage"),
        "ChargePeriodStart": ts,
        "ChargePeriodEnd": ts,
        "ProviderName": const("AWS"),
        "ServiceName": const("Bedrock"),
        "x_PartnerId": const(PARTNER),
        "x_SkuKey": const("sku"),
        "x_NativeLineId": ids,
        "x_SnapshotId": const("snap-1"),
        "x_SourceFile": const("a.parquet"),
        "x_SourceRow": pa.array(np.arange(1, n + 1, dtype=np.int64)),
    }
    arrays = [filled.get(f.name, pa.nulls(n, f.type)) for f in BILLING_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=BILLING_SCHEMA)


def test_timing_one_million_rows(adapter: ModuleType, tmp_path: Path) -> None:
    n = 1_000_000
    path = tmp_path / "big.parquet"
    pq.write_table(_big_billing(n), path)
    t0 = time.perf_counter()
    report = adapter.validate_parquet(
        path, "canonical_billing", source="big", params=BILLING_PARAMS
    )
    print(f"\ncanonical_billing on {n:,} rows: {time.perf_counter() - t0:.2f}s")
    assert report.success, report.reason()
    assert report.rows == n


def test_suite_gx_cannot_load_is_refused(adapter: ModuleType, tmp_path: Path) -> None:
    # GX refuses (or, for some configs, logs and drops) an invalid expectation; either way the
    # adapter must not run a shrunken suite.
    suite = {
        "name": "broken",
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x_SourceRow"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "BilledCost"}},
        ],
    }
    (tmp_path / "broken.json").write_text(json.dumps(suite))
    path = write(tmp_path, billing_columns(), BILLING_SCHEMA, "clean")
    with pytest.raises(ValueError):
        adapter.validate_parquet(path, "broken", source="s", params={}, suites_dir=tmp_path)


# --- policy (config/quality.yaml) ---------------------------------------------------------


def test_quality_config_loads_and_overrides_severity(tmp_path: Path) -> None:
    from revshare.quality_config import QualityConfig, load_quality_config

    repo = load_quality_config(SUITES.parent / "config")
    assert repo.severity["late_rows"] == "warn"
    assert repo.policy("aws/billing").on_block == "quarantine"
    assert load_quality_config(tmp_path) == QualityConfig()  # no file: defaults
    (tmp_path / "quality.yaml").write_text(
        "severity: {canonical_billing.late_rows: block}\n"
        "sources: {snowflake/billing: {on_block: report}}\n"
    )
    cfg = load_quality_config(tmp_path)
    assert cfg.policy("snowflake/billing").on_block == "report"
    assert cfg.policy("snowflake/billing").on_error == "quarantine"
    late = CheckResult("e", "c", False, False, 1, [], "", check="late_rows", severity="warn")
    report = ValidationReport("canonical_billing", "x", 1, (late,)).with_severities(cfg.severity)
    assert not report.success and report.blocking[0].check == "late_rows"
    (tmp_path / "quality.yaml").write_text("severity: {late_rows: fatal}\n")
    with pytest.raises(ValueError):
        load_quality_config(tmp_path)


def test_every_suite_check_has_an_id_and_severity() -> None:
    """Config keys checks by ``meta.check``: ids must be unique within a suite, severities
    valid, and every configured key must name a real check (a typo would silently not
    apply)."""
    from revshare.quality_config import load_quality_config

    ids: dict[str, set[str]] = {}
    for path in sorted(SUITES.glob("*.json")):
        suite = json.loads(path.read_text())
        if "expectations" not in suite:
            continue  # iso4217.json: data, not a suite
        names = [e["meta"]["check"] for e in suite["expectations"]]
        assert len(names) == len(set(names)), f"{path.name}: duplicate check ids"
        assert {e["meta"]["severity"] for e in suite["expectations"]} <= {"block", "warn"}
        ids[suite["name"]] = set(names)
    keys = load_quality_config(SUITES.parent / "config").severity
    every = set().union(*ids.values())
    for key in keys:
        suite, _, check = key.rpartition(".")
        assert (check in ids[suite]) if suite else (check in every), key


def test_native_suites_agree_with_the_connectors() -> None:
    from connectors.aws_cur2 import helpers as aws
    from connectors.azure_cost import helpers as az
    from connectors.focus import helpers as focus
    from connectors.snowflake_usage import helpers as sf

    def required(name: str) -> set[str]:
        suite = json.loads((SUITES / f"{name}.json").read_text())
        (e,) = [e for e in suite["expectations"] if e["meta"]["check"] == "required_columns"]
        return set(e["kwargs"]["column_set"])

    assert required("aws_cur2") == set(aws.REQUIRED)
    assert required("focus") == set(focus.REQUIRED)
    for layout in ("mca", "ea", "ea_legacy"):
        m = az.LAYOUTS[layout]
        assert required(f"azure_cost_{layout}") == {m[f] for f in az._REQUIRED}
    assert required("snowflake_cortex_usage") == set(sf.REQUIRED[sf.CORTEX])
    assert required("snowflake_usage_in_currency_daily") == set(sf.REQUIRED[sf.DAILY])
    assert required("snowflake_rate_sheet_daily") == set(sf.REQUIRED[sf.RATES])
    iso = set(json.loads((SUITES / "iso4217.json").read_text())["codes"])
    assert {"USD", "EUR", "GBP", "JPY"} <= iso and "XYZ" not in iso
    for path in SUITES.glob("*.json"):
        for e in json.loads(path.read_text()).get("expectations", []):
            if e["meta"].get("check") == "currency_iso4217":
                assert set(e["kwargs"]["value_set"]) == iso, path.name


# --- native files validated together ----------------------------------------------------------


def test_row_wise_suites(adapter: ModuleType) -> None:
    """Only suites whose checks give each file the union's result may run over several files."""
    azure = ["azure_cost_mca", "azure_cost_ea", "azure_cost_ea_legacy"]
    assert all(map(adapter.row_wise, ["aws_cur2", "gcp_billing", "snowflake_cortex_usage", *azure]))
    assert not adapter.row_wise("canonical_billing")  # duplicates: a GROUP BY query
    assert not adapter.row_wise("statements")
    # Azure's manifest tie-out: each file's own row count, summed over a group.
    assert [adapter.row_count_params(s) for s in azure] == [frozenset({"manifest_rows"})] * 3
    assert adapter.row_count_params("aws_cur2") == frozenset()


@pytest.mark.parametrize(
    ("expectation", "row_wise"),
    [
        ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}, True),
        ({"type": "expect_column_values_to_not_be_null",
          "kwargs": {"column": "a", "mostly": 0.9}}, False),
        ({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}, True),
        ({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 2}}, False),
        ({"type": "expect_table_row_count_to_be_between",
          "kwargs": {"min_value": 1, "max_value": 10}}, False),
        ({"type": "expect_column_values_to_be_unique", "kwargs": {"column": "a"}}, False),
        ({"type": "unexpected_rows_expectation",
          "kwargs": {"unexpected_rows_query": "SELECT * FROM {batch} WHERE a < 0"}}, True),
        ({"type": "unexpected_rows_expectation", "kwargs": {
            "unexpected_rows_query": "SELECT a FROM {batch} WHERE a IS NOT NULL GROUP BY a "
            "HAVING count(*) > 1"}}, False),
        ({"type": "unexpected_rows_expectation", "kwargs": {
            "unexpected_rows_query": "SELECT * FROM {batch} WHERE a > (SELECT avg(a) FROM "
            "{batch})"}}, False),
        ({"type": "expect_table_row_count_to_equal",
          "kwargs": {"value": {"$PARAMETER": "rows"}}}, True),
        ({"type": "expect_table_row_count_to_equal", "kwargs": {"value": 3}}, False),
    ],
)  # fmt: skip
def test_row_wise_decides_per_expectation(
    adapter: ModuleType, tmp_path: Path, expectation: dict, row_wise: bool
) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"expectations": [expectation]}))
    assert adapter.row_wise("s", tmp_path) is row_wise


def test_a_row_count_parameter_used_elsewhere_is_not_a_row_count(
    adapter: ModuleType, tmp_path: Path
) -> None:
    """Summed over a group, a parameter must mean nothing but the file's rows."""
    count = {"type": "expect_table_row_count_to_equal", "kwargs": {"value": {"$PARAMETER": "n"}}}
    other = {"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "a", "max_value": {"$PARAMETER": "n"}}}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps({"expectations": [count, other]}))
    assert adapter.row_count_params("s", tmp_path) == frozenset()
    assert not adapter.row_wise("s", tmp_path)


def _cortex_part(path: Path, tokens: list[float]) -> Path:
    n = len(tokens)
    pq.write_table(
        pa.table({
            "START_TIME": [P_START] * n, "END_TIME": [P_START + timedelta(hours=1)] * n,
            "ACCOUNT_LOCATOR": ["AB12345"] * n, "REGION": ["AWS_US_EAST_1"] * n,
            "FUNCTION_NAME": ["COMPLETE"] * n, "MODEL_NAME": ["llama3.1-8b"] * n,
            "WAREHOUSE_ID": [1] * n, "TOKENS": tokens, "TOKEN_CREDITS": [0.5] * n,
        }),
        path,
    )  # fmt: skip
    return path


class _Parts:
    """A connector that only exposes native files (what native_task asks of one)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def native_relations(self, ctx: object) -> list:
        from connectors.base import NativeRelation

        return [
            NativeRelation("snowflake_cortex_usage", p.name, f"SELECT * FROM read_parquet('{p}')")
            for p in self.paths
        ]


@pytest.mark.parametrize("bad", [None, 2])
def test_native_files_validated_together_report_as_if_alone(
    adapter: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: int | None
) -> None:
    """Clean parts are validated as one SELECT and each gets the checks it would get alone;
    a bad value in one part sends the group back to one validation a file, naming that part."""
    from flows import validation

    runs: list[str | None] = []

    def counted(*args: Any, **kwargs: Any) -> ValidationReport:
        runs.append(kwargs["file"])
        return adapter.validate_query(*args, **kwargs)

    monkeypatch.setattr(validation, "validate_query", counted)
    paths = [
        _cortex_part(tmp_path / f"part{i}.parquet", [-5.0 if i == bad else 10.0, 20.0, 30.0])
        for i in range(4)
    ]
    together = validation.native_task.fn(_Parts(paths), None, "snowflake/billing", None)
    names = [p.name for p in paths]
    assert runs == [None] + ([] if bad is None else names)  # the union, then each file
    alone = [validation.native_task.fn(_Parts([p]), None, "s", None)[0] for p in paths]
    alone = [replace(r, source="snowflake/billing") for r in alone]
    assert together == alone
    assert [r.rows for r in together] == [3] * 4
    failed = [(r.checks[0].file, c.check) for r in together for c in r.failures]
    assert failed == ([] if bad is None else [("part2.parquet", "non_negative_usage")])


class _AzureParts:
    """Parquet parts of one Azure cost details file, each with the row count its manifest
    promises (``manifest_rows``), as the connector exposes decoded copies."""

    def __init__(self, parts: list[tuple[Path, int]]) -> None:
        self.parts = parts

    def native_relations(self, ctx: object) -> list:
        from connectors.base import NativeRelation

        return [
            NativeRelation("azure_cost_mca", p.name, f"SELECT * FROM read_parquet('{p}')",
                           {"manifest_rows": promised}, columnar=True)
            for p, promised in self.parts
        ]  # fmt: skip


@pytest.mark.parametrize("off", [None, 1])
def test_azure_parts_validated_together_tie_each_to_its_manifest(
    adapter: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, off: int | None
) -> None:
    """Parts whose rows equal their manifest's count are validated as one SELECT against the
    sum; a part the manifest miscounts is validated alone and fails, naming that part."""
    import duckdb

    from flows import validation
    from revshare.config import load_config
    from revshare.generate import generate
    from revshare.periods import Period

    generate(
        load_config(SUITES.parent / "config"), Period.parse("2026-10"), tmp_path / "d", rows=300
    )
    (csv,) = (tmp_path / "d" / "azure").rglob("*.csv.gz")
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM read_csv('{csv}', all_varchar = true)").fetchone()[0]
    parts = []
    for i in range(4):
        part = tmp_path / f"part_{i}.parquet"
        con.execute(
            f"COPY (SELECT * EXCLUDE (n) FROM (SELECT *, row_number() OVER () AS n FROM "
            f"read_csv('{csv}', all_varchar = true)) WHERE n % 4 = {i}) TO '{part}'"
        )
        n = pq.ParquetFile(part).metadata.num_rows
        parts.append((part, n + (off if i == 2 and off else 0)))
    assert sum(n for _, n in parts) == rows + (off or 0)
    runs: list[str | None] = []

    def counted(*args: Any, **kwargs: Any) -> ValidationReport:
        runs.append(kwargs["file"])
        return adapter.validate_query(*args, **kwargs)

    monkeypatch.setattr(validation, "validate_query", counted)
    together = validation.native_task.fn(_AzureParts(parts), None, "azure/billing", None)
    names = [p.name for p, _ in parts]
    # The first two parts go together; a miscounted third is alone and cuts the run.
    assert runs == ([None] if off is None else [None, names[2], names[3]])
    alone = [validation.native_task.fn(_AzureParts([p]), None, "s", None)[0] for p in parts]
    assert together == [replace(r, source="azure/billing") for r in alone]
    failed = [(r.checks[0].file, c.check) for r in together for c in r.failures]
    assert failed == ([] if off is None else [("part_2.parquet", "rows_tie_to_manifest")])
