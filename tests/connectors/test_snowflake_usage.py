"""Snowflake usage views: the writer's Parquet unload read back by the connector."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import in_one_order

from connectors.base import NormalizeContext, SourceError
from connectors.snowflake_usage import SnowflakeUsageConnector, SnowflakeUsageSettings
from revshare.db import connect
from revshare.generate import snowflake as writer
from revshare.generate.lines import GEN_LINES_SCHEMA
from revshare.periods import Period
from revshare.schema import BILLING_REQUIRED, BILLING_SCHEMA

pytestmark = pytest.mark.integration

P = Period(2025, 3)
CORTEX_REL = "2025-03/CORTEX_FUNCTIONS_USAGE_HISTORY/data_0_0_0.snappy.parquet"
RATES_REL = "2025-03/RATE_SHEET_DAILY/data_0_0_0.snappy.parquet"
DAILY_REL = "2025-03/USAGE_IN_CURRENCY_DAILY/data_0_0_0.snappy.parquet"


def _line(n: int, when: datetime, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "line_id": f"sf-{n:04d}",
        "partner": "snowflake",
        "account_id": "XY12345",
        "account_name": "ANALYTICS",
        "currency": "USD",
        "usage_start": when,
        "usage_end": when + timedelta(hours=1),
        "billing_period": f"{when:%Y-%m}",
        "region": "AWS_US_WEST_2",
        "kind": "usage",
        "licensed": False,
        "service": "compute",
        "sku_key": None,
        "sku_id": None,
        "quantity": None,
        "unit_price": None,
        "cost": None,
        "credits": None,
        "credit_price": None,
        "parent_line_id": None,
    }
    row.update(kw)
    return row


def _cortex(n: int, when: datetime, model: str, tokens: int, credits: str, price: str = "3.10"):
    cost = D(credits) * D(price)
    return _line(
        n,
        when,
        licensed=True,
        service="ai_services",
        sku_key=model,
        quantity=D(tokens),
        credits=D(credits),
        credit_price=D(price),
        cost=cost,
    )


def _t(day: int, hour: int, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, 17, tzinfo=UTC)


def lines() -> pa.Table:
    rows = [
        _cortex(1, _t(3, 10), "llama3.3-70b", 1_234_567, "0.444444120"),
        _cortex(2, _t(3, 10), "llama3.3-70b", 10_001, "0.003600360"),  # same hour and model
        _cortex(3, _t(3, 11), "llama4-maverick", 987_654, "0.123456789"),
        _cortex(4, _t(17, 0), "llama4-scout", 3, "0.000000270"),
        _cortex(5, _t(31, 23), "snowflake-llama-3.3-70b", 555_555, "0.199999800"),
        _line(
            6,
            _t(3, 8),
            service="compute",
            quantity=D("12.5"),
            cost=D("38.75"),
            credits=D("12.5"),
            credit_price=D("3.10"),
        ),
        _line(7, _t(3, 0), service="storage", quantity=D("0.25"), cost=D("5.75")),
        _line(8, _t(17, 0), kind="credit", service="compute", quantity=D(0), cost=D("-5.00")),
        # outside the period: the unload for 2025-03 leaves them out
        _cortex(9, _t(28, 23, month=2), "llama3.3-70b", 1000, "0.000360000"),
        _cortex(10, _t(1, 0, month=4), "llama3.3-70b", 1000, "0.000360000"),
        _line(11, _t(3, 9), partner="aws", service="AmazonBedrock", cost=D("1.00")),
    ]
    return pa.Table.from_pylist(rows, schema=GEN_LINES_SCHEMA)


IN_PERIOD_CORTEX = {"sf-0001", "sf-0002", "sf-0003", "sf-0004", "sf-0005"}


def _connector(root: Path) -> SnowflakeUsageConnector:
    return SnowflakeUsageConnector(
        SnowflakeUsageSettings(path=str(root)), data_dir=root, source_name="snowflake/billing"
    )


def _ctx(root: Path, files: tuple[str, ...]) -> NormalizeContext:
    return NormalizeContext("snowflake", P, "snap-1", root, tuple(sorted(files)))


def _run(conn: SnowflakeUsageConnector, ctx: NormalizeContext) -> pa.Table:
    con = connect()
    table = con.sql(conn.normalize_sql(ctx)).to_arrow_table()
    # DuckDB does not carry nullability: check types, then that required columns hold values.
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in BILLING_SCHEMA]
    for name in BILLING_REQUIRED:
        assert table.column(name).null_count == 0, name
    table = table.cast(BILLING_SCHEMA)
    assert table.schema == BILLING_SCHEMA
    return table


def _written(tmp_path: Path) -> tuple[Path, SnowflakeUsageConnector, NormalizeContext]:
    root = tmp_path / "usage"
    writer.write(lines(), P, root)
    conn = _connector(root)
    delivery = conn.locate(P)
    return root, conn, _ctx(root, tuple(f.relpath for f in delivery.files))


def _sum(t: pa.Table, col: str, where: pa.Array | None = None) -> D:
    t = t.filter(where) if where is not None else t
    return sum((v for v in t[col].to_pylist() if v is not None), D(0))


def test_round_trip_exact(tmp_path: Path) -> None:
    _, conn, ctx = _written(tmp_path)
    assert set(ctx.files) == {CORTEX_REL, RATES_REL, DAILY_REL}
    out = _run(conn, ctx)
    assert out.schema == BILLING_SCHEMA
    src = lines().filter(pc.is_in(lines()["line_id"], pa.array(sorted(IN_PERIOD_CORTEX))))
    cortex = out.filter(pc.equal(out["ServiceName"], "Cortex AI"))
    assert cortex.num_rows == 5
    # per model: tokens and money exactly credits x rate
    for model in set(src["sku_key"].to_pylist()):
        want = src.filter(pc.equal(src["sku_key"], model))
        got = cortex.filter(pc.equal(cortex["x_SkuKey"], model))
        assert _sum(got, "BilledCost") == _sum(want, "cost")
        assert _sum(got, "ConsumedQuantity") == _sum(want, "quantity")
    assert _sum(cortex, "BilledCost") == D("0.444444120") * D("3.10") + D("0.003600360") * D(
        "3.10"
    ) + D("0.123456789") * D("3.10") + D("0.000000270") * D("3.10") + D("0.199999800") * D("3.10")
    assert set(cortex["ConsumedUnit"].to_pylist()) == {"Tokens"}
    assert set(cortex["BillingCurrency"].to_pylist()) == {"USD"}
    assert set(cortex["RegionId"].to_pylist()) == {"AWS_US_WEST_2"}
    # the daily view gives compute, storage and the credit; not ai_services again
    other = out.filter(pc.not_equal(out["ServiceName"], "Cortex AI"))
    assert sorted(other["x_SkuKey"].to_pylist()) == ["compute", "compute", "storage"]
    cats = {
        c: _sum(out, "BilledCost", pc.equal(out["ChargeCategory"], c))
        for c in set(out["ChargeCategory"].to_pylist())
    }
    assert cats == {
        "Usage": _sum(cortex, "BilledCost") + D("38.75") + D("5.75"),
        "Credit": D("-5.00"),
    }
    # the SQL does not depend on the session time zone (Arrow only labels the zone)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Kolkata'")
    again = con.sql(conn.normalize_sql(ctx)).to_arrow_table().cast(BILLING_SCHEMA)
    assert in_one_order(again).equals(in_one_order(out))


def test_daily_view_ties_to_cortex(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    out = _run(conn, ctx)
    con = duckdb.connect()
    con.register("out", out)
    tie = con.execute(f"""
        WITH c AS (
          SELECT CAST(timezone('UTC', ChargePeriodStart) AS DATE) AS d, sum(BilledCost) AS cost
          FROM out WHERE ServiceName = 'Cortex AI' GROUP BY 1),
        v AS (SELECT USAGE_DATE AS d, USAGE_IN_CURRENCY AS amount, USAGE
              FROM read_parquet('{root / DAILY_REL}') WHERE USAGE_TYPE = 'ai_services')
        SELECT c.d, c.cost, v.amount FROM c FULL JOIN v USING (d) ORDER BY 1""").fetchall()
    assert [r[0].day for r in tie] == [3, 17, 31]
    for _, cost, amount in tie:
        assert cost is not None and amount is not None
        assert abs(cost - amount) <= D("0.005")  # the view rounds each day to cents
        assert round(cost, 2) == amount


def test_period_filter(tmp_path: Path) -> None:
    # A wider unload (e.g. with a look-back) also holds the neighbouring months' rows: put the
    # February and April unloads beside March's as second part files.
    root, conn, ctx = _written(tmp_path)
    base = _run(conn, ctx)
    extra: list[str] = []
    for month in (Period(2025, 2), Period(2025, 4)):
        other = tmp_path / f"other-{month}"
        writer.write(lines(), month, other)
        for rel in (CORTEX_REL, RATES_REL, DAILY_REL):
            src = other / rel.replace("2025-03", str(month))
            dst_rel = rel.replace("data_0_0_0", f"data_0_0_{month.month}")
            shutil.copy(src, root / dst_rel)
            extra.append(dst_rel)
    wide = _ctx(root, (*ctx.files, *extra))
    out = _run(conn, wide)
    assert out.num_rows == base.num_rows == 8
    assert _sum(out, "BilledCost") == _sum(base, "BilledCost")
    assert set(out["x_SourceFile"].to_pylist()) <= set(ctx.files)
    for col in ("ChargePeriodStart", "BillingPeriodStart"):
        assert pc.min(out[col]).as_py() >= P.start
    assert pc.max(out["ChargePeriodStart"]).as_py() < P.end
    assert set(out["BillingPeriodEnd"].to_pylist()) == {P.end}


def test_lineage(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    out = _run(conn, ctx)
    assert set(out["x_PartnerId"].to_pylist()) == {"snowflake"}
    assert set(out["x_SnapshotId"].to_pylist()) == {"snap-1"}
    ids = out["x_NativeLineId"].to_pylist()
    assert len(set(ids)) == len(ids)
    for rec in out.to_pylist():
        native = pq.read_table(root / rec["x_SourceFile"]).to_pylist()[rec["x_SourceRow"] - 1]
        assert rec["x_NativeLineId"] == f"{rec['x_SourceFile']}:{rec['x_SourceRow']}"
        if rec["x_SourceFile"] == CORTEX_REL:
            assert native["MODEL_NAME"] == rec["x_SkuKey"]
            assert native["TOKENS"] == rec["ConsumedQuantity"]
            assert native["START_TIME"] == rec["ChargePeriodStart"]
        else:
            assert rec["x_SourceFile"] == DAILY_REL
            assert native["USAGE_IN_CURRENCY"] == rec["BilledCost"]
            assert native["USAGE_TYPE"] == rec["x_SkuKey"]
    # the two calls in one hour on one model stay two rows, on distinct warehouses
    cortex = pq.read_table(root / CORTEX_REL)
    assert cortex.num_rows == 5
    assert len(set(cortex["WAREHOUSE_ID"].to_pylist())) == 2


def test_missing_rate_is_a_source_error(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    rates = pq.read_table(root / RATES_REL)
    keep = pc.invert(
        pc.and_(
            pc.equal(rates["USAGE_TYPE"], "ai_services"),
            pc.equal(rates["DATE"], pa.scalar(_t(17, 0).date())),
        )
    )
    pq.write_table(rates.filter(keep), root / RATES_REL)
    with pytest.raises(SourceError) as err:
        conn.normalize_sql(ctx)
    e = err.value
    assert (e.file, e.row, e.column) == (CORTEX_REL, 4, "START_TIME")
    assert "2025-03-17" in str(e) and "RATE_SHEET_DAILY" in str(e)


def test_duplicate_rate_is_a_source_error(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    rates = pq.read_table(root / RATES_REL)
    pq.write_table(pa.concat_tables([rates, rates.slice(0, 1)]), root / RATES_REL)
    with pytest.raises(SourceError, match="several rates") as err:
        conn.normalize_sql(ctx)
    assert (err.value.file, err.value.row) == (RATES_REL, 1)


@pytest.mark.parametrize(
    "folder", ["2025-03/RATE_SHEET_DAILY", "2025-03/CORTEX_FUNCTIONS_USAGE_HISTORY"]
)
def test_missing_view_folder_is_a_source_error(tmp_path: Path, folder: str) -> None:
    root, conn, _ = _written(tmp_path)
    shutil.rmtree(root / folder)
    with pytest.raises(SourceError, match="unload incomplete") as err:
        conn.locate(P)
    assert folder in str(err.value)
    with pytest.raises(SourceError, match="no unload for period 2025-04"):
        conn.locate(Period(2025, 4))


def test_wrong_view_is_rejected(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    cortex = pq.read_table(root / CORTEX_REL)
    cortex = cortex.rename_columns(
        ["USAGE_TIME" if n == "START_TIME" else n for n in cortex.column_names]
    )
    pq.write_table(cortex, root / CORTEX_REL)
    with pytest.raises(SourceError, match="CORTEX_AISQL_USAGE_HISTORY") as err:
        conn.normalize_sql(ctx)
    assert (err.value.file, err.value.column) == (CORTEX_REL, "START_TIME")


def test_writer_is_deterministic_and_versioned(tmp_path: Path) -> None:
    a = writer.write(lines(), P, tmp_path / "a")
    b = writer.write(lines(), P, tmp_path / "b", version=2)
    for pa_, pb in zip(a[:-1], b[:-1], strict=True):
        assert pa_.read_bytes() == pb.read_bytes()
    assert _connector(tmp_path / "b").locate(P).version == "2"
    rates = pq.read_table(tmp_path / "a" / RATES_REL)
    assert rates.schema.field("EFFECTIVE_RATE").type == pa.decimal128(38, 2)
    assert sorted(set(rates["USAGE_TYPE"].to_pylist())) == ["ai_services", "compute"]


def test_writer_refuses_what_the_views_cannot_carry(tmp_path: Path) -> None:
    bad_cost = _cortex(1, _t(3, 10), "llama3.3-70b", 10, "0.000003600")
    bad_cost["cost"] = D("0.00001")
    tax = _line(2, _t(3, 10), kind="tax", service="tax", cost=D("1.00"))
    for row, msg in ((bad_cost, "credits x credit_price"), (tax, "no tax")):
        table = pa.Table.from_pylist([row], schema=GEN_LINES_SCHEMA)
        with pytest.raises(ValueError, match=msg):
            writer.write(table, P, tmp_path)


def test_null_credits_named_by_file_row_column(tmp_path: Path) -> None:
    root, conn, ctx = _written(tmp_path)
    cortex = pq.read_table(root / CORTEX_REL)
    i = cortex.schema.get_field_index("TOKEN_CREDITS")
    credits = cortex["TOKEN_CREDITS"].to_pylist()
    credits[2] = None
    cortex = cortex.set_column(i, "TOKEN_CREDITS", pa.array(credits, cortex["TOKEN_CREDITS"].type))
    pq.write_table(cortex, root / CORTEX_REL)
    with pytest.raises(SourceError, match="TOKEN_CREDITS is null") as err:
        conn.normalize_sql(ctx)
    assert (err.value.file, err.value.row, err.value.column) == (CORTEX_REL, 3, "TOKEN_CREDITS")
    assert str(err.value).startswith("snowflake/billing: ")


# -- remote-mode settings and queries (no server needed; the pulls are in tests/cloud) --------


def _remote_settings(**kw: object) -> SnowflakeUsageSettings:
    base: dict[str, object] = {"account": "myorg-acct", "user": "READER", "password_env": "SF_PW"}
    return SnowflakeUsageSettings(**{**base, **kw})


def test_local_fetch_is_locate(tmp_path: Path) -> None:
    _, conn, _ = _written(tmp_path)
    assert conn.fetch(P, tmp_path / "unused-staging") == conn.locate(P)
    assert not (tmp_path / "unused-staging").exists()


def test_remote_settings_choose_the_mode() -> None:
    s = _remote_settings(usage_view="snowflake.organization_usage.usage_in_currency_daily")
    assert s.remote and s.usage_view == "SNOWFLAKE.ORGANIZATION_USAGE.USAGE_IN_CURRENCY_DAILY"
    assert s.cortex_view == "SNOWFLAKE.ACCOUNT_USAGE.CORTEX_FUNCTIONS_USAGE_HISTORY"
    assert not SnowflakeUsageSettings(path="x").remote
    conn = SnowflakeUsageConnector(s, data_dir=Path("."), source_name="snowflake/billing")
    with pytest.raises(SourceError, match="use fetch"):
        conn.locate(P)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"usage_view": 'SNOWFLAKE.ORGANIZATION_USAGE."X"; DROP TABLE T'}, "database.schema.view"),
        ({"rate_view": "ORGANIZATION_USAGE.RATE_SHEET_DAILY"}, "database.schema.view"),
        ({"cortex_view": "SNOWFLAKE.ACCOUNT_USAGE.1BAD"}, "database.schema.view"),
        ({"warehouse": "WH; USE ROLE ACCOUNTADMIN"}, "identifier"),
        ({"password_env": None}, "exactly one of"),
        ({"private_key_path_env": "SF_KEY"}, "exactly one of"),
        ({"user": None}, "needs `user`"),
        ({"password_env": "NOT-A-VAR"}, "NAME of an environment variable"),
        ({"account_locator": "XY12345"}, "both account_locator and region"),
    ],
)
def test_remote_settings_are_validated(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        _remote_settings(**kw)
    with pytest.raises(ValueError, match="`path`"):
        SnowflakeUsageSettings()


def test_a_secret_pasted_as_an_env_var_name_is_never_echoed(tmp_path: Path) -> None:
    """A password typed into ``password_env`` (a common slip) must not reach the error text:
    neither pydantic's own message nor the quarantine reason the flow logs and reports."""
    from pydantic import ValidationError

    from connectors import build_connector
    from revshare.config import SourceConfig

    secret = "hunter2-Sn0wflake!"
    with pytest.raises(ValidationError) as err:
        _remote_settings(password_env=secret)
    assert secret not in str(err.value)
    src = SourceConfig(type="snowflake_usage", account="myorg-acct", user="R", password_env=secret)
    with pytest.raises(SourceError) as quarantined:
        build_connector(src, tmp_path, "snowflake/billing")
    assert "password_env" in str(quarantined.value) and secret not in str(quarantined.value)


def test_remote_queries_quote_names_and_bind_values() -> None:
    from connectors.snowflake_usage.remote_sql import queries

    cortex, daily, rates = queries(_remote_settings(), P)
    assert 'FROM "SNOWFLAKE"."ACCOUNT_USAGE"."CORTEX_FUNCTIONS_USAGE_HISTORY"' in cortex.sql
    assert 'CURRENT_ACCOUNT() AS "ACCOUNT_LOCATOR", CURRENT_REGION() AS "REGION"' in cortex.sql
    assert cortex.params == (("TIMESTAMP_TZ", P.start), ("TIMESTAMP_TZ", P.end))
    assert 'FROM "SNOWFLAKE"."ORGANIZATION_USAGE"."USAGE_IN_CURRENCY_DAILY"' in daily.sql
    assert '"ACCOUNT_LOCATOR" = CURRENT_ACCOUNT()' in daily.sql
    assert daily.params == rates.params == (P.first_day, P.end.date())
    assert "2025" not in cortex.sql + daily.sql + rates.sql  # the period is bound, not pasted
    assert all("SUM(" not in q.sql.upper() for q in (cortex, daily, rates))  # rows, not sums
    pinned = queries(_remote_settings(account_locator="XY12345", region="AWS_US_WEST_2"), P)
    assert "XY12345" not in pinned[0].sql and pinned[0].params[:2] == ("XY12345", "AWS_US_WEST_2")
    assert pinned[1].params == (P.first_day, P.end.date(), "XY12345", "AWS_US_WEST_2")
