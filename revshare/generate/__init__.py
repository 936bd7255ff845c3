"""``revshare generate``: one month laid out on disk exactly as each cloud delivers it.

The month is decided here (usage, noise, planted discrepancies); the cloud writers in this
package only format it. The ground truth (``ground_truth.json``) lists every planted
discrepancy with its type and money, computed from the same exact decimals the writers
serialize, so the end-to-end test can demand every plant found and nothing else.
"""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from revshare.config import Config
from revshare.db import connect
from revshare.generate import statements as st
from revshare.generate.statement_only import generate_statement_only
from revshare.generate.usage import (
    OTHER_SKUS,
    SPECS,
    combos,
    draw_lines,
    finalize,
    price_per_unit,
    to_gen_lines,
)
from revshare.periods import Period

#: Statement layout per partner: JSON or CSV, and the quantity unit size the partner reports in.
STATEMENT_STYLE = {"aws": (False, 1000), "gcp": (True, 1), "azure": (False, 1),
                   "snowflake": (True, 1)}  # fmt: skip
MIN_ROWS = 400


def _writer(source_type: str) -> tuple[ModuleType, tuple[str, ...]]:
    """The writer module for a billing connector type (its ``write`` and ``Sink``), and the
    settings keys they take."""
    from revshare.generate import aws, azure, gcp, snowflake

    return {
        "aws_cur2": (aws, ("export_name",)),
        "gcp_billing": (gcp, ("table",)),
        "azure_cost": (azure, ("export_name",)),
        "snowflake_usage": (snowflake, ()),
    }[source_type]


def _where(table: pa.Table, **eq: object) -> pa.Table:
    mask = None
    for col, val in eq.items():
        m = pa.compute.equal(table[col], val)
        mask = m if mask is None else pa.compute.and_(mask, m)
    return table.filter(mask)


def partner_lines(
    partner: str, period: Period, rows: int, rng: np.random.Generator, *, restated: bool = False
) -> pa.Table:
    """All of a partner's lines for the month, with private truth columns (_model, ...)."""
    table = combos(partner)
    n = max(rows, MIN_ROWS)
    parts = [to_gen_lines(partner, period, draw_lines(partner, period, int(n * 0.85), rng, table))]
    parts += fixed_parts(partner, period, n, rng, table, restated=restated)
    usage = pa.concat_tables(parts)
    usage = pa.concat_tables([usage, *cent_exact(partner, period, usage, table)])
    return pa.concat_tables([usage, *noise(partner, period, usage, n, rng)])


def fixed_parts(
    partner: str,
    period: Period,
    n: int,
    rng: np.random.Generator,
    table: pa.Table,
    *,
    restated: bool = False,
    late: bool = True,
) -> list[pa.Table]:
    """The usage the plants need besides the random draw (line ids 1,000,000 to 4,999,999),
    drawn from ``rng`` after the main draw, in this order, so a month is the same each run.
    A sliced month draws GCP's late rows per slice instead (``late=False``)."""
    spec = SPECS[partner]
    parts = []
    if partner == "azure":  # the EUR account must bill the FX plant's grain
        forced = _where(table, model="llama-3.3-70b", unit="input_tokens", currency="EUR")
        parts.append(
            to_gen_lines(
                partner, period, draw_lines(partner, period, 12, rng, forced, start_index=1_000_000)
            )
        )
    if partner == "snowflake":  # the period-shift plant needs last-day usage
        forced = _where(table, model="llama-4-maverick")
        parts.append(
            to_gen_lines(
                partner,
                period,
                draw_lines(
                    partner, period, 8, rng, forced, start_index=1_000_000, day=period.days - 1
                ),
            )
        )
    if partner == "gcp" and late:
        parts.append(late_lines(period, n, rng, table, start_index=2_000_000))
    unmapped = st.plant("unmapped_sku")
    if partner == unmapped.partner:
        t = pa.Table.from_pylist([{
            "model": None, "unit": None, "region": "us-east-1", "currency": "USD",
            "account_id": spec.accounts[0][0], "account_name": spec.accounts[0][1],
            "sku_key": unmapped.sku, "unit_credits": None,
            "unit_price": price_per_unit("aws", "llama-3.3-70b", "input_tokens", "std", "USD"),
        }])  # fmt: skip
        parts.append(
            to_gen_lines(
                partner, period, draw_lines(partner, period, 12, rng, t, start_index=3_000_000)
            )
        )
    if restated and partner == st.plant("restatement").partner:
        p = st.plant("restatement")
        late = _where(table, model=p.model, unit=p.unit, region=spec.regions[0])
        parts.append(
            to_gen_lines(
                partner, period, draw_lines(partner, period, 10, rng, late, start_index=4_000_000)
            )
        )
    return parts


def late_lines(
    period: Period, n: int, rng: np.random.Generator, table: pa.Table, *, start_index: int
) -> pa.Table:
    """GCP's late rows, one per 30 lines: used on the last day of last month, invoiced in this
    one."""
    drawn = draw_lines("gcp", period, max(3, n // 30), rng, table, start_index=start_index, day=0)
    return to_gen_lines("gcp", period, drawn, day_offset=-1)


def cent_exact(
    partner: str, period: Period, usage: pa.Table | ds.Dataset, table: pa.Table
) -> list[pa.Table]:
    """For the tolerance-edge plants: one more usage line per grain so that the grain's
    revenue times the (flat) share rate is a whole number of cents, so "exactly at the
    tolerance" is exact. 0.20 x 0.15 = 0.03: revenue is topped up to a multiple of 0.20."""
    out = []
    con = connect()
    con.register("u", usage)
    for i, p in enumerate(
        x for x in st.PLANTS.values() if x.offset is not None and x.partner == partner
    ):
        r = con.execute(
            "SELECT sum(cost) FROM u WHERE _model = ? AND _unit = ?", [p.model, p.unit]
        ).fetchone()[0]
        step = Decimal("0.20")
        top_up = (step - r % step) % step
        if top_up:
            combo = _where(table, model=p.model, unit=p.unit).slice(0, 1)
            line = to_gen_lines(
                partner,
                period,
                draw_lines(
                    partner, period, 1, np.random.default_rng(i), combo, start_index=6_000_000 + i
                ),
            )
            cost = pa.array([top_up], pa.decimal128(38, 12))
            out.append(line.set_column(line.schema.get_field_index("cost"), "cost", cost))
    return out


#: One tax line per account (a copy of its first usage line) for 5 % of the month's usage.
TAX_SQL = """SELECT * EXCLUDE (total) REPLACE (
    replace(line_id, 'usage', 'tax') AS line_id,
    'tax' AS kind, false AS licensed, 'Tax' AS sku_key, 0::DECIMAL(38,12) AS quantity,
    0::DECIMAL(38,12) AS unit_price, round(total * 0.05, 2) AS cost, NULL AS _model,
    NULL AS _unit, 0 AS _tokens)
    FROM {source}"""
_TAX_WINDOW = """(SELECT *, sum(cost) OVER () AS total FROM u) QUALIFY row_number() OVER
    (PARTITION BY account_id ORDER BY line_id) = 1"""


def noise(
    partner: str,
    period: Period,
    usage: pa.Table,
    n: int,
    rng: np.random.Generator,
    *,
    start_index: int = 5_000_000,
    tax: bool = True,
) -> list[pa.Table]:
    """Lines that must not move the reconciliation: other services, credits, refunds, tax.
    A sliced month (``slices``) takes these per slice (``start_index`` keeps the other
    services' line ids apart) and its tax once, over the whole month (``tax=False`` here)."""
    spec = SPECS[partner]
    others = pa.Table.from_pylist(
        [
            {
                "model": None,
                "unit": None,
                "region": r,
                "currency": a[2],
                "account_id": a[0],
                "account_name": a[1],
                "sku_key": sku,
                "service": svc,
                "unit_price": Decimal("0.0125"),
                "unit_credits": Decimal("0.000001") if partner == "snowflake" else None,
            }
            for svc, sku in OTHER_SKUS[partner]
            for r in spec.regions
            for a in spec.accounts
        ]
    )
    out = [
        to_gen_lines(
            partner,
            period,
            draw_lines(partner, period, n // 12, rng, others, start_index=start_index),
            licensed=False,
        )
    ]
    if partner in ("aws", "gcp"):
        con = connect()
        con.execute("SET threads = 1")  # samples must be the same on every run
        con.register("u", usage)
        sample = "USING SAMPLE reservoir(2%) REPEATABLE (7)"
        out.append(
            con.sql(f"""SELECT * REPLACE (replace(line_id, 'usage', 'credit') AS line_id,
            'credit' AS kind, -round(cost * 0.1, 10) AS cost, line_id AS parent_line_id)
            FROM (SELECT * FROM u WHERE _model IS NOT NULL {sample})""").to_arrow_table()
        )
        if tax:
            out.append(con.sql(TAX_SQL.format(source=_TAX_WINDOW)).to_arrow_table())
        if partner == "aws":
            out.append(
                con.sql("""SELECT * REPLACE (replace(line_id, 'usage', 'refund')
                AS line_id, 'refund' AS kind, -cost AS cost, line_id AS parent_line_id)
                FROM (SELECT * FROM u WHERE _model IS NOT NULL
                USING SAMPLE reservoir(1%) REPEATABLE (11))""").to_arrow_table()
            )
    return [t.cast(out[0].schema) for t in out]


def generate(
    config: Config,
    period: Period,
    out: Path,
    *,
    seed: int = 7,
    rows: int = 2000,
    restate: bool = False,
    slice_rows: int | None = None,
) -> dict:
    """Write the month for every partner in ``config`` and return the ground truth.

    Above ``slice_rows`` lines per partner (default ``slices.SLICE_ROWS``) the month is
    drawn and written in slices so memory stays flat as it grows (``slices``); at or below it
    the month is one table, exactly as it always was.
    """
    from revshare.generate import slices

    size = slices.slice_rows(slice_rows)
    truth: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="revshare-generate-") as tmp:
        for pid, partner in config.partners.items():
            if partner.statement_only:  # no billing export: see generate/statement_only.py
                continue
            src = partner.billing
            module, keys = _writer(src.type)
            kwargs = {k: src.connector_settings()[k] for k in keys}
            root = out / src.connector_settings()["path"]

            spill = Path(tmp) / pid
            deliver = (pid, period, rows, seed, size, module, root, kwargs, spill)
            v1 = current = _month(*deliver, version=1, restated=False)
            if restate and pid == st.plant("restatement").partner:
                current = _month(*deliver, version=2, restated=True)
            lines = st.statement_lines(pid, v1, period, config)
            as_json, unit_size = STATEMENT_STYLE[pid]
            st.write_statement(
                pid,
                period,
                lines,
                out / partner.statement.connector_settings()["path"] / str(period),
                as_json,
                unit_size,
            )
            truth += _truth(pid, period, lines, current, config, restate)
    truth += generate_statement_only(config, period, out)
    doc = {
        "period": str(period),
        "seed": seed,
        "rows": rows,
        "restated": restate,
        "discrepancies": [t for t in truth if t["phase"] != "boundary"],
        # Grains bent to exactly the tolerance: they must reconcile as matched.
        "checks": [t for t in truth if t["phase"] == "boundary"],
    }
    (out / "ground_truth.json").write_text(json.dumps(doc, indent=1))
    return doc


def _month(
    pid: str,
    period: Period,
    rows: int,
    seed: int,
    size: int,
    module: ModuleType,
    root: Path,
    kwargs: dict,
    spill: Path,
    *,
    version: int,
    restated: bool,
) -> pa.Table | ds.Dataset:
    """Write one delivery of a partner's month; return its lines for statements and truth:
    one table up to ``size`` lines (as always), else the sliced month's spilled usage."""
    from revshare.generate import slices

    if max(rows, MIN_ROWS) <= size:
        rng = np.random.default_rng([seed, list(SPECS).index(pid)])
        lines = partner_lines(pid, period, rows, rng, restated=restated)
        module.write(finalize(lines), period, root, version=version, **kwargs)
        return lines
    sink = module.Sink(period, root, version=version, **kwargs)
    month = slices.write_month(
        pid, period, max(rows, MIN_ROWS), seed, sink, spill / f"v{version}", size=size,
        restated=restated,
    )  # fmt: skip
    sink.close()
    return month


def _truth(
    pid: str,
    period: Period,
    lines: list[dict],
    billing: pa.Table | ds.Dataset,
    config: Config,
    restate: bool,
) -> list[dict]:
    contract = config.contract_for(pid, period)
    found = []
    for p in st.PLANTS.values():
        if p.partner != pid or (p.phase == "restated" and not restate):
            continue
        if p.type == "unmapped_sku":
            amount = -st.expected_share(billing, period, config, pid, f"sku_key = '{p.sku}'")
        elif p.type == "minimum_guarantee":
            owed = st.expected_share(billing, period, config, pid, "licensed")
            if contract.minimum_guarantee is None or owed >= contract.minimum_guarantee:
                continue  # a larger month earns more than the minimum: nothing to top up
            amount = owed - contract.minimum_guarantee
        else:
            reported = sum(
                (
                    ln["share_amount"]
                    for ln in lines
                    if (ln["model_id"], ln["unit"]) == (p.model, p.unit)
                ),
                Decimal(0),
            )
            amount = reported - st.expected_share(
                billing, period, config, pid, f"_model = '{p.model}' AND _unit = '{p.unit}'"
            )
        found.append(
            {
                "type": p.type,
                "partner": pid,
                "model": p.model,
                "unit": p.unit,
                "sku": p.sku,
                "period": str(period),
                "amount": str(st.money(amount)),
                "currency": contract.currency,
                "phase": p.phase,
            }
        )
    return found
