"""The published reconciliation grain, defined once (docs/outputs.md).

Billing partners and statement-only partners produce rows of different shapes (a billing
partner has billed figures, a statement-only partner has arithmetic, history and probe
figures). Published together they always take this one schema, whichever partners a run
held, so a results file and the warehouse table keep the same columns run after run.
"""

from __future__ import annotations

import pyarrow as pa

_S, _I, _I32 = pa.string(), pa.int64(), pa.int32()
_M = pa.decimal128(38, 12)  # money and token quantities
_R = pa.decimal128(18, 10)  # tolerances, FX rates, bands
_SHARE_RATE = pa.decimal128(20, 16)

GRAIN_SCHEMA = pa.schema([
    ("partner", _S), ("period", _S), ("model_id", _S), ("unit", _S), ("region", _S),
    ("billed_tokens", _M), ("billed_revenue", _M), ("share_rate", _SHARE_RATE),
    ("expected_share", _M), ("reported_tokens", _M), ("reported_revenue", _M),
    ("reported_share", _M), ("dup_share", _M), ("duplicate_lines", _I),
    ("statement_currency", _S), ("foreign_native", _M), ("domestic", _M),
    ("foreign_currency", _S), ("n_fccy", _I), ("fx_rate", _R), ("billing_lines", _I),
    ("statement_lines", _I), ("billing_snapshot", _S), ("statement_snapshot", _S),
    ("statement_id", _S), ("revision", _I), ("previous_tokens", _M), ("previous_revenue", _M),
    ("previous_snapshot", _S), ("tol_abs", _R), ("tol_rel", _R), ("currency", _S),
    ("amount", _M), ("diff_tokens", _M), ("diff_revenue", _M), ("shift_days", _I32),
    ("shift_tokens", _M), ("implied_fx", _R), ("type", _S), ("sku", _S),
    ("computed_share", _M), ("minimum_guarantee", _M),
    # statement-only partners (revshare/statement_only.py); null on billing rows
    ("basis", _S), ("check_name", _S), ("at_stake", _M), ("computed_revenue", _M),
    ("priced_lines", _I), ("stated_total", _M), ("lines_total", _M), ("totals_given", _I),
    ("probe_tokens", _M), ("probe_revenue", _M), ("probe_snapshot", _S),
    ("previous_period", _S), ("history_revenue", _M), ("history_share", _M),
    ("price_per_mtok", _M), ("history_price_per_mtok", _M), ("band", _R),
    ("discrepancy_id", _S), ("explanation", _S),
])  # fmt: skip


def conform(table: pa.Table) -> pa.Table:
    """``table`` in the published schema: missing columns null, each column cast to its type
    (exact decimals only widen or match). A column the schema does not know is an error, so a
    new figure cannot be published undocumented."""
    unknown = sorted(set(table.column_names) - set(GRAIN_SCHEMA.names))
    if unknown:
        raise ValueError(f"grain columns missing from revshare.grain.GRAIN_SCHEMA: {unknown}")
    cols = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in GRAIN_SCHEMA
    ]
    return pa.Table.from_arrays(cols, schema=GRAIN_SCHEMA)
