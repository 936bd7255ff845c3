"""Unit tests for the core on small tables: schema, periods, config, catalog, store."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import SHARED_DATA

from revshare import schema
from revshare.catalog import map_keys, mapped_sql, register_rules
from revshare.config import Config, load_config
from revshare.db import connect
from revshare.errors import SourceError
from revshare.periods import Period
from revshare.sqlutil import exact_decimal, exact_product, half_even
from revshare.store import land, open_snapshot

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SHARED = SHARED_DATA


def test_focus_columns_are_the_spec_columns_in_order() -> None:
    with (SHARED / "focus" / "focus_1_2_columns.csv").open() as f:
        spec = list(csv.DictReader(f))
    assert [c.name for c in schema.FOCUS_COLUMNS] == [r["ColumnId"] for r in spec]
    for col, row in zip(schema.FOCUS_COLUMNS, spec, strict=True):
        # We never promise more than the spec: a column we hold non-null is one the spec
        # makes mandatory and non-null. (Connectors cannot fill every mandatory column from
        # every native export, so some stay nullable and the suites say which are required.)
        if not col.nullable:
            assert row["FeatureLevel"] == "Mandatory" and row["AllowsNulls"] == "False", col.name
        if row["DataType"] == "Decimal":
            assert pa.types.is_decimal(col.type) and col.type.scale == schema.MONEY_SCALE
        if row["DataType"] == "Date/Time":
            assert col.type == pa.timestamp("us", tz="UTC")


def test_our_columns_carry_the_x_prefix_and_lineage() -> None:
    names = [c.name for c in schema.EXTENSION_COLUMNS]
    assert all(n.startswith("x_") for n in names)
    assert {"x_PartnerId", "x_ModelId", "x_SnapshotId", "x_SourceFile", "x_SourceRow"} <= set(names)


def test_select_sql_types_every_column_and_refuses_unknown_names() -> None:
    con = connect()
    t = con.sql(f"SELECT {schema.billing_select_sql({'BilledCost': '0.1'})}").to_arrow_table()
    assert t.schema == schema.BILLING_SCHEMA.remove_metadata() or t.schema.names == [
        c.name for c in schema.BILLING_COLUMNS
    ]
    assert t.column("BilledCost")[0].as_py() == Decimal("0.100000000000")
    with pytest.raises(KeyError, match="Biled"):
        schema.billing_select_sql({"BiledCost": "1"})


def test_double_to_decimal_keeps_cloud_figures_exact() -> None:
    con = connect()
    v = con.execute(f"SELECT CAST(0.00000080000::DOUBLE AS {schema.MONEY_SQL})").fetchone()[0]
    assert v == Decimal("0.000000800000")


@pytest.mark.parametrize("whole_first", [False, True])
def test_exact_decimal_parses_text_exactly_as_duckdb_cast(whole_first: bool) -> None:
    texts = ["0", "-0", "1", "+1.25", "-0.5", ".5", "5.", "0.000000000001", "-.000000000001",
             "0.0000000000005", "-0.0000000000005", "0.0000000000004999", "1.9999999999995",
             "-2.49999999999950001", "12345678901234.123456789012", "0.5434782608695652",
             "5.64902E-05", "-1.5e3", "99999999999999999999999999",
             # whole numbers take the BIGINT path; look-alikes must not
             "1234567", "1234567.0", "-1234567.000", " 7654321 ", "0001000000", "1e7", "1.25e6",
             "1234567.5", "-1234567.49", "999999999999999999", "9999999999999999999",
             "1234567.0000000000001", "1000000.", "+1000000",
             "12345678901234567890123.0", "1234567.00", "1234567.50", "-7654321.0",
             "9223372036854775807", "9223372036854775807.0", "-9223372036854775808",
             "9223372036854775808", "1234567.0 ", " 1234567.0", "1234567.01"]  # fmt: skip
    con = connect()
    con.execute("CREATE TABLE t AS SELECT unnest($1::VARCHAR[]) AS v", [texts])
    # And 200,000 doubles' shortest text across 24 magnitudes, whole and fractional.
    con.execute("SELECT setseed(0.25)")
    con.execute(
        "INSERT INTO t SELECT CAST(CASE WHEN i % 3 = 0 THEN round(x) ELSE x END AS VARCHAR) "
        "FROM (SELECT i, (random() - 0.4) * pow(10, i % 24 - 6) AS x FROM range(200000) r(i))"
    )
    parsed = exact_decimal("v", whole_first=whole_first)
    diff = con.execute(
        f"SELECT v, {parsed}, CAST(v AS DECIMAL(38,12)) FROM t "
        f"WHERE ({parsed}) IS DISTINCT FROM CAST(v AS DECIMAL(38,12))"
    ).fetchall()
    assert diff == []
    tried = exact_decimal("v", "TRY_CAST", whole_first=whole_first)
    assert con.execute(
        f"SELECT {tried} FROM (SELECT unnest(['x', '1.2.3', NULL]) AS v)"
    ).fetchall() == [
        (None,),
        (None,),
        (None,),
    ]


@pytest.mark.parametrize("b_places", [0, 2, 3, 4, 10])
def test_exact_product_is_duckdbs_rounded_product(b_places: int) -> None:
    """The shortcut must give exactly the cast's value, on operands it takes and on those it
    must leave to the cast (too many places, 10^6 and more, negative, NULL)."""
    con = connect()
    con.execute("SELECT setseed(0.75)")
    con.execute(
        "CREATE TABLE t AS SELECT "
        "CAST(CAST((random() - 0.3) * pow(10, i % 11 - 3) AS DECIMAL(38,12)) AS DECIMAL(38,12)) "
        "  AS a, "
        "CAST(round((random() - 0.2) * 3, CAST(i % 7 + (i % 3) * 2 AS INTEGER)) AS VARCHAR) AS b "
        "FROM range(30000) r(i)"
    )
    con.execute(
        "INSERT INTO t VALUES (NULL, '1'), (1, NULL), (999999.999999999999, '0.92'), "
        "(1000000, '0.92'), (-0.000240000000, '0.9234'), (0.00024, '1'), "
        "(0.000000000001, '0.5'), (-0.000000000001, '0.5'), (123.456, '0.0000000001')"
    )
    got = exact_product("a", "b", b_places=b_places)
    diff = con.execute(
        f"SELECT a, b, {got}, CAST(a * CAST(b AS DECIMAL(18,10)) AS DECIMAL(38,12)) FROM t "
        f"WHERE ({got}) IS DISTINCT FROM CAST(a * CAST(b AS DECIMAL(18,10)) AS DECIMAL(38,12))"
    ).fetchall()
    assert diff == []
    assert con.execute(f"SELECT typeof({got}) FROM t LIMIT 1").fetchone() == ("DECIMAL(38,12)",)


def test_half_even_rounds_exact_decimals_as_python_does() -> None:
    ties = ["2.5", "3.5", "-2.5", "-3.5", "0.5", "-0.5", "1.2345675", "-1.2345675",
            "1.2345665", "0", "-0.0000005", "0.0000015", "999999.9999995", "1.5000000001",
            "-1.4999999999999"]  # fmt: skip
    con = connect()
    con.execute(
        "CREATE TABLE t AS SELECT CAST(unnest($1::VARCHAR[]) AS DECIMAL(38,12)) AS x", [ties]
    )
    con.execute("SELECT setseed(0.5)")
    con.execute(
        "INSERT INTO t SELECT CAST(CAST((random() - 0.5) * 2e15 AS BIGINT) AS DECIMAL(38,0)) "
        "* CAST('0.000000000001' AS DECIMAL(13,12)) FROM range(20000)"
    )
    for places in (0, 2, 6):
        step = Decimal(1).scaleb(-places)
        rows = con.execute(f"SELECT x, {half_even('x', places)} FROM t").fetchall()
        assert [y for _, y in rows] == [x.quantize(step, rounding=ROUND_HALF_EVEN) for x, _ in rows]
        kind = con.execute(f"SELECT typeof({half_even('x', places)}) FROM t LIMIT 1").fetchone()
        assert kind == (f"DECIMAL(38,{places})",)


def test_periods() -> None:
    p = Period.parse("2026-12")
    assert (str(p.next()), str(p.prev()), p.days, p.compact) == ("2027-01", "2026-11", 31, "202612")
    assert p.start == datetime(2026, 12, 1, tzinfo=UTC) and p.end == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert str(Period.parse("2026-01").prev()) == "2025-12"
    for bad in ("2026-13", "26-01", "2026/01", ""):
        with pytest.raises(ValueError):
            Period.parse(bad)


def test_example_config_has_four_partners_and_models() -> None:
    cfg = load_config(REPO / "config")
    assert set(cfg.partners) >= {"aws", "gcp", "azure", "snowflake"}
    assert len(cfg.catalog.models) >= 4
    c = cfg.contract_for("snowflake", Period.parse("2026-10"))
    assert c.model_rates["llama-4-maverick"] == Decimal("0.25")
    assert cfg.fx.rate(Period.parse("2026-10"), "EUR", "USD") == Decimal("1.0800")
    with pytest.raises(LookupError, match="FX"):
        cfg.fx.rate(Period.parse("2020-01"), "EUR", "USD")


def _raw(**over) -> dict:
    return {
        "partners": {"p": {"id": "p", "name": "P", "billing": {"type": "x"},
                           "statement": {"type": "s"}}},
        "catalog": {"models": [{"id": "m-1", "name": "M"}],
                    "partners": {"p": {"scope": "m", "models": [{"model": "m-1", "match": "m1"}],
                                       "units": [{"unit": "input_tokens", "match": "in"}]}}},
        "contracts": [{"partner": "p", "effective_from": "2025-01-01", "share_rate": "0.1",
                       "currency": "USD"}],
        **over,
    }  # fmt: skip


def test_config_rejects_what_would_give_wrong_money() -> None:
    Config(**_raw())
    overlapping = _raw(
        contracts=[*_raw()["contracts"], {**_raw()["contracts"][0], "effective_from": "2026-01-01"}]
    )
    with pytest.raises(LookupError, match="2 contracts"):
        Config(**overlapping).contract_for("p", Period.parse("2026-03"))
    with pytest.raises(ValueError, match="unknown model"):
        bad = _raw()
        bad["catalog"]["partners"]["p"]["models"][0]["model"] = "nope"
        Config(**bad)
    with pytest.raises(ValueError, match="no contract"):
        Config(**_raw(contracts=[{**_raw()["contracts"][0], "partner": "q"}]))
    with pytest.raises(ValueError):
        Config(**_raw(contracts=[{**_raw()["contracts"][0], "currency": "usd"}]))
    with pytest.raises(ValueError):
        Config(**_raw(contracts=[{**_raw()["contracts"][0], "charge_categories": ["Tips"]}]))


def test_config_expands_environment_variables(tmp_path: Path, monkeypatch) -> None:
    for name in ("catalog.yaml", "contracts.yaml", "fx_rates.yaml"):
        (tmp_path / name).write_text((REPO / "config" / name).read_text())
    (tmp_path / "partners.yaml").write_text(
        (REPO / "config" / "partners.yaml").read_text().replace("aws/cur2", "${AWS_EXPORT_PATH}")
    )
    monkeypatch.setenv("AWS_EXPORT_PATH", "/mnt/exports/cur2")
    cfg = load_config(tmp_path)
    assert cfg.partners["aws"].billing.connector_settings()["path"] == "/mnt/exports/cur2"


def test_catalog_maps_variants_by_pattern_and_reports_unmapped() -> None:
    cat = load_config(REPO / "config").catalog.partners["aws"]
    keys = ["USE1-Llama3-3-70B-input-tokens", "USW2-Llama4-Maverick-17B-output-tokens-batch",
            "USE1-Llama3-1-70B-LatencyOptimized-input-tokens",
            "EUC1-Llama4-Maverick-17B-cache-read-input-token-count",
            "USE1-Llama3-2-90B-input-tokens", "USE1-BoxUsage:m5.large"]  # fmt: skip
    con = connect()
    con.register(
        "src",
        pa.table(
            {
                "x_SkuKey": keys,
                "ConsumedQuantity": pa.array([Decimal("1.5")] * 6, pa.decimal128(38, 12)),
                "x_ModelId": pa.nulls(6, pa.string()),
                "x_Unit": pa.nulls(6, pa.string()),
                "x_Tokens": pa.nulls(6, pa.decimal128(38, 12)),
                "x_CatalogStatus": pa.nulls(6, pa.string()),
            }
        ),
    )
    register_rules(con, cat)
    map_keys(con, "SELECT * FROM src", cat)
    rows = con.sql(mapped_sql("SELECT * FROM src")).to_arrow_table().to_pylist()
    got = {
        r["x_SkuKey"]: (r["x_ModelId"], r["x_Unit"], r["x_Tokens"], r["x_CatalogStatus"])
        for r in rows
    }
    assert got[keys[0]] == ("llama-3.3-70b", "input_tokens", Decimal(1500), "mapped")
    assert got[keys[1]][:2] == ("llama-4-maverick", "output_tokens")
    assert got[keys[3]][:2] == ("llama-4-maverick", "cached_input_tokens")
    # Llama 3.1 70B and 3.2 90B are the licensor's but not in the catalog: unmapped, not dropped.
    assert got[keys[2]][3] == got[keys[4]][3] == "unmapped"
    assert got[keys[5]] == (None, None, None, "out_of_scope")
    assert len(rows) == len(keys)


class _F:
    def __init__(self, path: Path, relpath: str) -> None:
        self.path, self.relpath = path, relpath


def test_snapshots_are_content_addressed_and_immutable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("x\n1\n")
    root = tmp_path / "landing"
    s1 = land([_F(src / "a.csv", "d/a.csv")], root, source="p/billing")
    again = land([_F(src / "a.csv", "d/a.csv")], root, source="p/billing")
    assert again.id == s1.id and len(list(root.iterdir())) == 1
    (src / "a.csv").write_text("x\n2\n")
    s2 = land([_F(src / "a.csv", "d/a.csv")], root, source="p/billing")
    assert s2.id != s1.id
    assert (s1.dir / "d/a.csv").read_text() == "x\n1\n"  # the old one stays readable
    assert open_snapshot(root, s1.id).files == ("d/a.csv",)
    with pytest.raises(SourceError, match="unsafe"):
        land([_F(src / "a.csv", "../escape.csv")], root, source="p/billing")
    with pytest.raises(SourceError, match="missing"):
        land([_F(src / "gone.csv", "gone.csv")], root, source="p/billing")
