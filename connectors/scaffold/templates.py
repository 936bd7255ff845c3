"""Templates for ``revshare connectors new NAME``: a working connector to edit, not a blank.

The scaffold reads a simple usage CSV (one folder per period) so that its generated tests,
the standard suite, pass the moment it is written; a data engineer then changes the layout,
the column mapping and the checks to the real format, keeping the suite green. They are
Python strings (``string.Template``, ``$$`` for a literal dollar) so they ship with the package.
"""

from __future__ import annotations

INIT = '''"""$title: billing lines from <describe the native format and where it is delivered>.

Scaffolded by ``revshare connectors new $name``. Layout read by ``locate``:
``<path>/<YYYY-MM>/*.csv``, one folder per billing period. Replace the layout, the mapping in
helpers.py and the checks with the real format's; keep tests/connectors/test_$name.py green.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from connectors.base import Capabilities, Connector, Delivery, NativeFile, NormalizeContext
from $package import helpers as h
from $package.settings import ${Class}Settings
from revshare.periods import Period

__all__ = ["${Class}Connector", "${Class}Settings"]


class ${Class}Connector(Connector):
    type: ClassVar[str] = "$name"
    # Say what the source really does: flows branch on these, never on the type name.
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("csv",), restates=False, late_days=0, pushdown=False
    )
    settings_model: ClassVar[type[${Class}Settings]] = ${Class}Settings
    settings: ${Class}Settings

    def locate(self, period: Period) -> Delivery:
        """The files of the newest complete delivery for the period; a SourceError if none."""
        folder = self.local_root(self.settings.path) / str(period)
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise self.error(f"no files for {period} in {folder}")
        return Delivery(tuple(NativeFile(p, f"{period}/{p.name}") for p in files))

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        """One SELECT of canonical rows; bad input raises a SourceError naming file, row and
        column before any SQL is handed out."""
        con = duckdb.connect()
        try:
            parts = [self._file_sql(con, ctx, rel) for rel in ctx.files]
        finally:
            con.close()
        return self.union_files(parts)

    def _file_sql(self, con: duckdb.DuckDBPyConnection, ctx: NormalizeContext, rel: str) -> str:
        scan = h.scan_sql(ctx.file(rel))
        try:
            columns = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
        except duckdb.Error as exc:
            raise self.error(f"cannot read as CSV: {exc}", file=rel) from None
        missing = [c for c in h.REQUIRED if c not in columns]
        if missing:
            raise self.error(f"lacks the column {missing[0]}", file=rel, column=missing[0])
        bad = con.sql(h.check_sql(scan)).fetchone()
        if bad:
            row, col, val, why = bad
            raise self.error(f"{col} {why}: {val!r}", file=rel, row=int(row), column=col)
        return h.canonical_sql(scan, rel, ctx)
'''

HELPERS = '''"""SQL for the $name format: read as text, check, map to the canonical columns.

Everything is read as text so money never passes through a double; DECIMAL casts happen once,
in ``billing_select_sql`` (DECIMAL(38,12)). Headers are matched by name, never position.
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import NormalizeContext
from revshare.schema import billing_select_sql
from revshare.sqlutil import exact_decimal, lit

#: Columns of the native file; every one is required in this template.
REQUIRED: tuple[str, ...] = (
    "line_id", "account_id", "usage_start", "usage_end", "currency", "service", "sku",
    "quantity", "cost",
)  # fmt: skip
DECIMALS: tuple[str, ...] = ("quantity", "cost")
TIMES: tuple[str, ...] = ("usage_start", "usage_end")


def scan_sql(path: Path) -> str:
    """Text columns plus ``_row``, the 1-based data row (file order; header excluded)."""
    return (
        f"(SELECT *, CAST(row_number() OVER () AS BIGINT) AS _row FROM read_csv({lit(path)}, "
        "header = true, all_varchar = true, strict_mode = true))"
    )


def check_sql(scan: str) -> str:
    """The first bad row as (row, column, value, problem), or nothing."""
    cases = [(f"{c} IS NULL OR trim({c}) = ''", c, "is empty") for c in REQUIRED]
    cases += [(f"{exact_decimal(c, 'TRY_CAST')} IS NULL", c, "is not a decimal number")
              for c in DECIMALS]  # fmt: skip
    cases += [(f"TRY_CAST({c} AS TIMESTAMPTZ) IS NULL", c, "is not a date/time") for c in TIMES]
    when = " ".join(f"WHEN {cond} THEN {lit(col)}" for cond, col, _ in cases)
    val = " ".join(f"WHEN {cond} THEN {col}" for cond, col, _ in cases)
    why = " ".join(f"WHEN {cond} THEN {lit(w)}" for cond, _, w in cases)
    return (
        f"SELECT r, c, v, w FROM (SELECT _row AS r, CASE {when} END AS c, CASE {val} END AS v, "
        f"CASE {why} END AS w FROM {scan}) WHERE c IS NOT NULL ORDER BY r LIMIT 1"
    )


def canonical_sql(scan: str, rel: str, ctx: NormalizeContext) -> str:
    """The canonical SELECT for one file, rows of ``ctx.period`` only (by usage_start, UTC)."""
    start = "CAST(usage_start AS TIMESTAMPTZ)"
    exprs = {
        "BilledCost": exact_decimal("cost"),
        "EffectiveCost": exact_decimal("cost"),
        "BillingAccountId": "account_id",
        "BillingCurrency": "upper(trim(currency))",
        "BillingPeriodStart": f"CAST({lit(ctx.period.start.isoformat())} AS TIMESTAMPTZ)",
        "BillingPeriodEnd": f"CAST({lit(ctx.period.end.isoformat())} AS TIMESTAMPTZ)",
        "ChargeCategory": "'Usage'",
        "ChargePeriodStart": start,
        "ChargePeriodEnd": "CAST(usage_end AS TIMESTAMPTZ)",
        "PricingQuantity": exact_decimal("quantity"),
        "ConsumedQuantity": exact_decimal("quantity"),
        "ProviderName": "'$title'",
        "PublisherName": "'$title'",
        "InvoiceIssuerName": "'$title'",
        "ServiceName": "service",
        "SkuId": "sku",
        "x_SkuKey": "sku",
        "x_PartnerId": lit(ctx.partner_id),
        "x_SnapshotId": lit(ctx.snapshot_id),
        "x_SourceFile": lit(rel),
        "x_SourceRow": "_row",
        "x_NativeLineId": "line_id",
    }
    return (
        f"SELECT {billing_select_sql(exprs)} FROM {scan} "
        f"WHERE {start} >= CAST({lit(ctx.period.start.isoformat())} AS TIMESTAMPTZ) "
        f"AND {start} < CAST({lit(ctx.period.end.isoformat())} AS TIMESTAMPTZ)"
    )
'''

SETTINGS = '''"""Settings of the $name connector (``type: $name`` in config/partners.yaml)."""

from __future__ import annotations

from typing import Literal

from connectors.base import ConnectorSettings


class ${Class}Settings(ConnectorSettings):
    """Every key of the source's YAML block except ``type``; unknown keys are refused."""

    type: Literal["$name"]
    #: Folder holding one sub-folder per period (YYYY-MM); relative to the data folder.
    path: str
'''

README = """# $name — $title billing

Scaffolded by `revshare connectors new $name`. Edit this file as the connector grows: it is
the operator's manual.

| setting | meaning |
| --- | --- |
| `path` | folder holding one sub-folder per period, `YYYY-MM/*.csv` |

```yaml
partners:
  acme:
    billing:
      type: $name
      path: $name/acme
```

## Layout and mapping

| native column | canonical | how |
| --- | --- | --- |
| cost | BilledCost, EffectiveCost | text -> DECIMAL(38,12), exact |
| quantity | PricingQuantity, ConsumedQuantity | same |
| usage_start / usage_end | ChargePeriodStart / End | ISO text, zoneless = session UTC |
| currency | BillingCurrency | upper-cased |
| sku | SkuId, x_SkuKey | as is (the catalog maps it to a model) |
| line_id | x_NativeLineId | must be unique per snapshot |
| file, data row | x_SourceFile, x_SourceRow | 1-based, header excluded |

## Errors

A missing column, an empty required value, a number or date that does not parse: a
`SourceError` naming file, row and column.

## Capabilities

billing, csv, no restatements, no late data, no pushdown. Change them to what the source does.
"""

TEST = '''"""The standard connector suite for $name (tests/connectors/standard.py)."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from standard import ConnectorCase, StandardSuite, Totals

from revshare.periods import Period

pytestmark = pytest.mark.integration

HEADER = ["line_id", "account_id", "usage_start", "usage_end", "currency", "service", "sku",
          "quantity", "cost"]  # fmt: skip


def write(root: Path, period: Period) -> Totals:
    """Native input for one period, and the money it must sum to (from the data, exactly)."""
    folder = root / "$name" / str(period)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        [f"{period}-{i}", "acct-1", f"{period}-0{1 + i % 9}T0{i % 10}:00:00Z",
         f"{period}-0{1 + i % 9}T0{i % 10}:59:59Z", "USD" if i % 3 else "EUR", "Inference",
         "llama-3.3-70b-input", f"{1000 * i}", f"{i}.000000000123"]
        for i in range(1, 25)
    ]  # fmt: skip
    with (folder / "usage.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    totals: dict[str, Decimal] = {}
    for r in rows:
        totals[r[4]] = totals.get(r[4], Decimal(0)) + Decimal(r[8])
    return totals


def spoil(root: Path, period: Period) -> None:
    path = root / "$name" / str(period) / "usage.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",12.5 USD"  # data row 3: text in cost
    path.write_text("\\n".join(lines) + "\\n")


class Test${Class}(StandardSuite):
    case = ConnectorCase(
        type="$name",
        settings={"path": "$name"},
        write=write,
        period=Period(2026, 10),
        other_period=Period(2026, 11),
        spoil=spoil,
        bad_column="cost",
        bad_row=3,
    )
'''
