"""Reconciliation rules on small hand-made tables: each discrepancy type, and invariants."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revshare.config import load_config
from revshare.db import connect
from revshare.periods import Period
from revshare.reconcile import reconcile_partner
from revshare.schema import BILLING_SCHEMA, STATEMENT_SCHEMA

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "config")
P = Period.parse("2026-10")
D = Decimal


def bill(
    model: str | None,
    unit: str | None,
    tokens: int,
    cost: str,
    *,
    ccy: str = "USD",
    day: int = 5,
    status: str = "mapped",
    sku: str = "k",
    n: int = 0,
    snapshot: str = "sB",
    category: str = "Usage",
) -> dict:
    start = P.start + timedelta(days=day)
    return {
        "BilledCost": D(cost), "BillingAccountId": "a", "BillingCurrency": ccy,
        "BillingPeriodStart": P.start, "BillingPeriodEnd": P.end, "ChargeCategory": category,
        "ChargePeriodStart": start, "ChargePeriodEnd": start + timedelta(hours=1),
        "x_PartnerId": "aws", "x_SkuKey": sku, "x_ModelId": model, "x_Unit": unit,
        "x_Tokens": D(tokens), "x_CatalogStatus": status, "x_NativeLineId": f"l{n}",
        "x_SnapshotId": snapshot, "x_SourceFile": "f.parquet", "x_SourceRow": n + 1,
        "ServiceName": "s", "ProviderName": "p", "ConsumedQuantity": D(tokens),
    }  # fmt: skip


def stmt(
    model: str,
    unit: str,
    tokens: int,
    revenue: str,
    share: str,
    *,
    n: int = 0,
    ccy: str = "USD",
    region: str = "r1",
) -> dict:
    return {
        "StatementId": "S", "Revision": 1, "IssuedDate": datetime(2026, 11, 5).date(),
        "x_PartnerId": "aws", "BillingPeriodStart": P.start, "x_ModelId": model,
        "RegionId": region, "x_Unit": unit, "x_Tokens": D(tokens), "GrossRevenue": D(revenue),
        "ShareRate": D("0.15"), "ShareAmount": D(share), "Currency": ccy,
        "x_SnapshotId": "sS", "x_SourceFile": "s.csv", "x_SourceRow": n + 1,
    }  # fmt: skip


_OUT: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _out(tmp_path_factory: pytest.TempPathFactory) -> None:
    _OUT[:] = [tmp_path_factory.mktemp("results")]


def _out_dir() -> Path:
    """Where a test's reconcile writes its line files (the helpers here have no tmp_path;
    each reconcile replaces its files whole)."""
    return _OUT[0]


def run(
    billing: list[dict],
    statements: list[dict],
    prev: list[dict] | None = None,
    partner: str = "aws",
) -> dict[tuple, dict]:
    con = connect()
    con.register("billing", pa.Table.from_pylist(billing, schema=BILLING_SCHEMA))
    con.register("statements", pa.Table.from_pylist(statements, schema=STATEMENT_SCHEMA))
    con.register("prev_billing", pa.Table.from_pylist(prev or [], schema=BILLING_SCHEMA))
    res = reconcile_partner(con, CONFIG, partner, P, _out_dir())
    return {(r["model_id"] or r["sku"], r["unit"]): r for r in res.grain.to_pylist()}


M, IN, OUT = "llama-3.3-70b", "input_tokens", "output_tokens"
BASE = [bill(M, IN, 1_000_000, "100.00", n=0), bill(M, IN, 1_000_000, "100.00", n=1, day=30)]


def test_matched_within_tolerance() -> None:
    r = run(BASE, [stmt(M, IN, 2_000_000, "200.00", "30.00")])
    assert r[(M, IN)]["type"] == "matched" and r[(M, IN)]["amount"] == 0


@pytest.mark.parametrize(
    ("statement", "kind", "amount"),
    [
        ([], "missing_from_statement", "-30"),
        ([stmt(M, IN, 1_800_000, "180.00", "27.00")], "quantity_mismatch", "-3"),
        ([stmt(M, IN, 2_000_000, "190.00", "28.50")], "price_revenue_mismatch", "-1.5"),
        ([stmt(M, IN, 2_000_000, "200.00", "24.00")], "share_miscalculated", "-6"),
        ([stmt(M, IN, 1_000_000, "100.00", "15.00")], "period_shift", "-15"),
        (
            [
                stmt(M, IN, 1_000_000, "100.00", "15.00", region="r1"),
                stmt(M, IN, 1_000_000, "100.00", "15.00", region="r2", n=1),
                stmt(M, IN, 1_000_000, "100.00", "15.00", region="r2", n=2),
            ],
            "duplicate_lines",
            "15",
        ),
        ([stmt(M, IN, 2_000_000, "185.19", "27.78", ccy="EUR")], "currency_fx_mismatch", "0.0024"),
    ],
)
def test_each_type_with_its_amount(statement: list[dict], kind: str, amount: str) -> None:
    row = run(BASE, statement)[(M, IN)]
    assert row["type"] == kind
    assert row["amount"] == D(amount), row["explanation"]
    assert row["explanation"]


def test_missing_from_billing_and_unmapped_sku() -> None:
    billing = [
        *BASE,
        bill(None, None, 10, "50.00", status="unmapped", sku="USE1-Llama9-x", n=5),
        bill(None, None, 10, "999.00", status="out_of_scope", sku="EC2", n=6),
    ]
    r = run(
        billing, [stmt(M, IN, 2_000_000, "200.00", "30.00"), stmt(M, OUT, 10, "40.00", "6.00", n=1)]
    )
    assert r[(M, OUT)]["type"] == "missing_from_billing" and r[(M, OUT)]["amount"] == D(6)
    assert r[("USE1-Llama9-x", None)]["type"] == "unmapped_sku"
    assert r[("USE1-Llama9-x", None)]["amount"] == D("-7.5")
    assert "EC2" not in {k[0] for k in r}  # another publisher's service is out of scope


def test_fx_mismatch_names_the_rate_the_partner_used() -> None:
    billing = [bill(M, IN, 1_000_000, "100.00"), bill(M, IN, 1_000_000, "100.00", ccy="EUR", n=1)]
    r = run(billing, [stmt(M, IN, 2_000_000, "220.00", "33.00")])[(M, IN)]
    assert r["type"] == "currency_fx_mismatch"
    assert r["implied_fx"] == D("1.2") and r["fx_rate"] == D("1.08")
    assert "1.2000" in r["explanation"] and "1.0800" in r["explanation"]


def test_restatement_when_statement_matches_the_earlier_snapshot() -> None:
    prev = [{**b, "x_SnapshotId": "sOld"} for b in BASE]
    now = [*BASE, bill(M, IN, 500_000, "50.00", n=7, day=10)]
    r = run(now, [stmt(M, IN, 2_000_000, "200.00", "30.00")], prev=prev)[(M, IN)]
    assert r["type"] == "restatement" and r["amount"] == D("-7.5")
    assert r["previous_snapshot"] == "sOld"


def test_credits_refunds_and_tax_do_not_count_under_a_usage_only_contract() -> None:
    billing = [
        *BASE,
        bill(M, IN, 0, "-20.00", n=8, category="Credit"),
        bill(None, None, 0, "9.00", status="out_of_scope", sku="Tax", n=9, category="Tax"),
    ]
    assert run(billing, [stmt(M, IN, 2_000_000, "200.00", "30.00")])[(M, IN)]["type"] == "matched"


lines = st.lists(
    st.tuples(st.sampled_from([M, "llama-4-scout"]), st.sampled_from([IN, OUT]),
              st.integers(1, 10**9), st.decimals("0.01", "5000", places=6), st.integers(0, 30)),
    min_size=1, max_size=25)  # fmt: skip
reports = st.lists(
    st.tuples(st.sampled_from([M, "llama-4-scout"]), st.sampled_from([IN, OUT]),
              st.integers(1, 10**9), st.decimals("0", "5000", places=2)),
    max_size=6)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(lines, reports, st.randoms(use_true_random=False))
def test_amounts_add_up_and_order_does_not_matter(billing, statement, rnd) -> None:
    b = [bill(m, u, t, str(c), day=d, n=i) for i, (m, u, t, c, d) in enumerate(billing)]
    s = [
        stmt(m, u, t, str(r), str(r * D("0.15")), n=i, region=f"r{i}")
        for i, (m, u, t, r) in enumerate(statement)
    ]
    first = run(b, s)
    total_reported = sum((D(x[3]) * D("0.15") for x in statement), D(0))
    expected = sum((r["expected_share"] for r in first.values()), D(0))
    assert sum(r["amount"] for r in first.values()) == total_reported - expected
    rnd.shuffle(b)
    rnd.shuffle(s)
    again = run(b, s)
    assert {k: (v["type"], v["amount"]) for k, v in again.items()} == {
        k: (v["type"], v["amount"]) for k, v in first.items()
    }


def _with_contract(**terms) -> object:
    """The example config with aws's contract replaced (validated like a file would be)."""
    from revshare.config import Config

    raw = CONFIG.model_dump(mode="json")
    base = {
        "partner": "aws",
        "effective_from": "2025-01-01",
        "currency": "USD",
        "tolerance": {"absolute": "0.50", "relative": "0.0005"},
    }
    raw["contracts"] = [c for c in raw["contracts"] if c["partner"] != "aws"] + [{**base, **terms}]
    return Config(**raw)


def run_with(config, billing, statements) -> dict[tuple, dict]:
    con = connect()
    con.register("billing", pa.Table.from_pylist(billing, schema=BILLING_SCHEMA))
    con.register("statements", pa.Table.from_pylist(statements, schema=STATEMENT_SCHEMA))
    con.register("prev_billing", pa.Table.from_pylist([], schema=BILLING_SCHEMA))
    res = reconcile_partner(con, config, "aws", P, _out_dir())
    return {(r["model_id"] or r["sku"] or r["type"], r["unit"]): r for r in res.grain.to_pylist()}


TIERS = [{"from_revenue": "0", "rate": "0.20"}, {"from_revenue": "150", "rate": "0.10"}]


@pytest.mark.parametrize(("mode", "share"), [("marginal", "35.00"), ("whole_volume", "20.00")])
def test_tiers_marginal_and_whole_volume(mode: str, share: str) -> None:
    # 200 of revenue: marginal = 150 x 0.20 + 50 x 0.10 = 35; whole-volume = 200 x 0.10 = 20.
    cfg = _with_contract(tiers={"mode": mode, "bands": TIERS})
    r = run_with(cfg, BASE, [stmt(M, IN, 2_000_000, "200.00", share)])[(M, IN)]
    assert r["type"] == "matched"
    assert r["expected_share"].quantize(D("0.000001")) == D(share)


def test_tier_boundary_crossed_is_priced_on_the_whole_month() -> None:
    # Two models; neither alone crosses 150, together they do: the blended rate applies to both.
    cfg = _with_contract(tiers={"mode": "marginal", "bands": TIERS})
    billing = [bill(M, IN, 1_000_000, "100.00"), bill(M, OUT, 1_000_000, "100.00", n=1)]
    r = run_with(
        cfg,
        billing,
        [
            stmt(M, IN, 1_000_000, "100.00", "20.00"),
            stmt(M, OUT, 1_000_000, "100.00", "20.00", n=1),
        ],
    )
    # Partner claimed 0.20 on everything (no tier), but 200 earns 35, 17.50 per model.
    assert {r[(M, u)]["type"] for u in (IN, OUT)} == {"share_miscalculated"}
    assert sum(r[(M, u)]["amount"] for u in (IN, OUT)).quantize(D("0.000001")) == D(5)


def test_minimum_guarantee_top_up_keeps_amounts_adding_up() -> None:
    cfg = _with_contract(share_rate="0.15", minimum_guarantee="100.00")
    r = run_with(cfg, BASE, [stmt(M, IN, 2_000_000, "200.00", "30.00")])
    mg = r[("minimum_guarantee", None)]
    assert mg["amount"] == D(-70) and mg["expected_share"] == D(70)
    assert "100.00" in mg["explanation"] and "70.00" in mg["explanation"]
    total = sum(x["amount"] for x in r.values())
    assert total == D("30.00") - max(D("30.00"), D(100))


def test_guarantee_that_does_not_bind_adds_nothing() -> None:
    cfg = _with_contract(share_rate="0.15", minimum_guarantee="29.00")
    r = run_with(cfg, BASE, [stmt(M, IN, 2_000_000, "200.00", "30.00")])
    assert set(r) == {(M, IN)}


def test_daily_fx_policy_converts_each_line_at_its_day() -> None:
    from datetime import date

    raw = _with_contract(share_rate="0.15", fx_policy="daily").model_dump(mode="json")
    raw["fx"]["daily"] = {
        str(date(2026, 10, 6)): {"EUR": "1.10"},
        str(date(2026, 10, 31)): {"EUR": "1.00"},
    }
    from revshare.config import Config

    cfg = Config(**raw)
    billing = [
        bill(M, IN, 1_000_000, "100.00", ccy="EUR", day=5),
        bill(M, IN, 1_000_000, "100.00", ccy="EUR", day=30, n=1),
    ]
    r = run_with(cfg, billing, [stmt(M, IN, 2_000_000, "210.00", "31.50")])[(M, IN)]
    assert r["type"] == "matched" and r["billed_revenue"] == D(210)
    assert r["fx_rate"] == D("1.05")  # the volume-weighted rate booked, shown in the report
    with pytest.raises(LookupError, match="2026-10-10"):
        run_with(cfg, [bill(M, IN, 1, "1.00", ccy="EUR", day=9)], [])


def test_credits_count_when_the_contract_nets_them() -> None:
    cfg = _with_contract(share_rate="0.15", charge_categories=["Usage", "Credit"])
    billing = [*BASE, bill(M, IN, 0, "-20.00", n=8, category="Credit")]
    r = run_with(cfg, billing, [stmt(M, IN, 2_000_000, "180.00", "27.00")])[(M, IN)]
    assert r["type"] == "matched" and r["billed_revenue"] == D(180)


def test_contract_needs_exactly_one_rate_rule() -> None:
    with pytest.raises(ValueError, match="share_rate or tiers"):
        _with_contract()
    with pytest.raises(ValueError, match="model_rates need a flat"):
        _with_contract(tiers={"mode": "marginal", "bands": TIERS}, model_rates={M: "0.3"})


def _result(billing, statements, prev=None):
    con = connect()
    con.register("billing", pa.Table.from_pylist(billing, schema=BILLING_SCHEMA))
    con.register("statements", pa.Table.from_pylist(statements, schema=STATEMENT_SCHEMA))
    con.register("prev_billing", pa.Table.from_pylist(prev or [], schema=BILLING_SCHEMA))
    return reconcile_partner(con, CONFIG, "aws", P, _out_dir())


def test_latest_revision_is_reconciled_and_its_changes_are_listed() -> None:
    r1 = [stmt(M, IN, 2_000_000, "180.00", "27.00"), stmt(M, OUT, 5, "1.00", "0.15", n=1)]
    r2 = [
        {
            **stmt(M, IN, 2_000_000, "200.00", "30.00", n=5),
            "Revision": 2,
            "x_SourceFile": "s-r2.csv",
        }
    ]
    res = _result(BASE, r1 + r2)
    grain = {(r["model_id"], r["unit"]): r for r in res.grain.to_pylist()}
    assert grain[(M, IN)]["type"] == "matched"  # revision 1's shortfall is gone
    assert (M, OUT) not in grain  # revision 2 dropped that line; billing never had it
    diff = {(d["model_id"], d["unit"]): d for d in res.revisions.to_pylist()}
    assert diff[(M, IN)]["change"] == "changed" and diff[(M, IN)]["share_change"] == D(3)
    assert diff[(M, OUT)]["change"] == "removed"
    assert {d["from_revision"] for d in diff.values()} == {1}


def test_restatement_lists_the_billing_lines_that_changed() -> None:
    prev = [{**b, "x_SnapshotId": "sOld"} for b in BASE]
    changed = {**BASE[1], "BilledCost": D("90.00")}
    now = [BASE[0], changed, bill(M, IN, 500_000, "60.00", n=7, day=10)]
    res = _result(now, [stmt(M, IN, 2_000_000, "200.00", "30.00")], prev)
    assert res.grain.to_pylist()[0]["type"] == "restatement"
    diff = {d["line_id"]: d for d in pq.read_table(res.restated).to_pylist()}
    assert diff["l1"]["change"] == "changed" and diff["l1"]["old_cost"] == D(100)
    assert diff["l7"]["change"] == "added" and diff["l7"]["new_cost"] == D(60)
    assert "l0" not in diff


def _with_matching(rules: list[dict]):
    from revshare.config import Config

    raw = CONFIG.model_dump(mode="json")
    raw["matching"] = {"partners": {"aws": {"rules": rules}}}
    return Config(**raw)


def test_matching_rules_are_data_region_grain_holds_each_region_to_its_billing() -> None:
    billing = [bill(M, IN, 1_000_000, "100.00"), bill(M, IN, 1_000_000, "100.00", n=1)]
    billing[0]["RegionId"], billing[1]["RegionId"] = "r1", "r2"
    # The partner reports everything under r1: in total it agrees, per region it does not.
    statement = [stmt(M, IN, 2_000_000, "200.00", "30.00", region="r1")]
    by_model = run_with(
        _with_matching([{"rule": "grain", "keys": ["model", "unit"]}]), billing, statement
    )
    assert by_model[(M, IN)]["type"] == "matched"
    cfg = _with_matching([{"rule": "grain", "keys": ["model", "unit", "region"]}])
    con = connect()
    con.register("billing", pa.Table.from_pylist(billing, schema=BILLING_SCHEMA))
    con.register("statements", pa.Table.from_pylist(statement, schema=STATEMENT_SCHEMA))
    con.register("prev_billing", pa.Table.from_pylist([], schema=BILLING_SCHEMA))
    res = reconcile_partner(con, cfg, "aws", P, _out_dir())
    rows = {r["region"]: r for r in res.grain.to_pylist()}
    assert rows["r1"]["type"] == "quantity_mismatch" and rows["r1"]["amount"] == D(15)
    assert rows["r2"]["type"] == "missing_from_statement" and rows["r2"]["amount"] == D(-15)
    assert res.terms["matching"] == "grain by model, unit, region"
    behind = pq.read_table(res.lines).to_pylist()
    assert {b["region"] for b in behind if b["side"] == "billing"} == {"r1", "r2"}
    assert all(b["region"] == "r1" for b in behind if b["side"] == "statement")


def test_without_a_partner_total_rule_a_guarantee_is_not_applied() -> None:
    from revshare.config import Config

    raw = _with_contract(share_rate="0.15", minimum_guarantee="100.00").model_dump(mode="json")
    raw["matching"] = {
        "partners": {"aws": {"rules": [{"rule": "grain", "keys": ["model", "unit"]}]}}
    }
    r = run_with(Config(**raw), BASE, [stmt(M, IN, 2_000_000, "200.00", "30.00")])
    assert set(r) == {(M, IN)}
    with pytest.raises(ValueError, match="model and unit"):
        _with_matching([{"rule": "grain", "keys": ["model"]}])
