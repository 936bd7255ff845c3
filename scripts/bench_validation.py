"""Time the canonical-billing suite on N synthetic lines (GX on DuckDB SQL, no pandas).

    .venv/bin/python scripts/bench_validation.py --rows 1000000 --rows 10000000

Lines are written by DuckDB straight to Parquet with the exact canonical schema (all of
``revshare.schema.BILLING_COLUMNS``; unused ones null), clean except for a realistic share of
late rows (a warn-level check that still has to scan and sample), so every check runs to the
end. The time reported is ``validate_parquet`` alone, GX import excluded (paid once per
process). The numbers go into docs/performance.md, "Validation".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from revshare.schema import billing_select_sql
from revshare.sqlutil import lit

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
PARAMS: dict[str, object] = {
    "period_start": START,
    "period_end": END,
    "late_window_start": START - timedelta(days=3),
    "partner_id": "aws",
}


def write_lines(path: Path, rows: int) -> None:
    """``rows`` canonical lines: 31 days of usage, 1 in 1000 rows two days late."""
    exprs = {
        "BilledCost": "CAST((i % 997) / 100 AS DECIMAL(38,12))",
        "ConsumedQuantity": "CAST(i % 1000 AS DECIMAL(38,12))",
        "BillingAccountId": "'acct-' || (i % 7)",
        "BillingCurrency": "CASE WHEN i % 5 = 0 THEN 'EUR' ELSE 'USD' END",
        "BillingPeriodStart": f"TIMESTAMPTZ {lit(START.isoformat())}",
        "BillingPeriodEnd": f"TIMESTAMPTZ {lit(END.isoformat())}",
        "ChargeCategory": "CASE WHEN i % 50 = 0 THEN 'Credit' ELSE 'Usage' END",
        "ChargePeriodStart": f"TIMESTAMPTZ {lit(START.isoformat())} + to_hours("
        "CASE WHEN i % 1000 = 0 THEN -48 ELSE (i % 744) END)",
        "ChargePeriodEnd": f"TIMESTAMPTZ {lit(START.isoformat())} + to_hours(i % 744 + 1)",
        "ProviderName": "'AWS'",
        "ServiceName": "'Amazon Bedrock'",
        "RegionId": "'us-east-1'",
        "x_PartnerId": "'aws'",
        "x_SkuKey": "'USE1-Llama3-3-70B-input-tokens'",
        "x_ModelId": "'llama-3.3-70b'",
        "x_CatalogStatus": "'mapped'",
        "x_NativeLineId": "'line-' || i",
        "x_SnapshotId": "'snap-bench'",
        "x_SourceFile": "'part-' || (i // 1000000) || '.parquet'",
        "x_SourceRow": "i % 1000000 + 1",
    }
    select = billing_select_sql(exprs)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT {select} FROM range({rows}) AS r(i)) "
        f"TO {lit(path)} (FORMAT parquet, COMPRESSION zstd)"
    )
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append", help="rows (repeatable)")
    ap.add_argument("--dir", type=Path, help="where to write the Parquet (default: a temp dir)")
    args = ap.parse_args()
    from expectations import adapter

    t0 = time.perf_counter()
    adapter._gx()
    print(f"import great_expectations: {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.rows or [1_000_000]:
            path = Path(tmp) / f"billing_{n}.parquet"
            t0 = time.perf_counter()
            write_lines(path, n)
            made = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = adapter.validate_parquet(
                path, "canonical_billing", source="bench", params=PARAMS
            )
            took = time.perf_counter() - t0
            assert report.success and not report.errored, report.reason()
            assert [c.check for c in report.warnings] == ["late_rows"], report.reason()
            print(
                f"{n:>12,} rows: {len(report.checks)} checks in {took:.1f} s "
                f"({n / took / 1e6:.2f} M rows/s); data written in {made:.1f} s; "
                f"{report.warnings[0].unexpected_count:,} late rows flagged"
            )


if __name__ == "__main__":
    main()
