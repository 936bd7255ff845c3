"""The BigQuery SQL that pulls one invoice month of the billing export (no SDK here).

Two filters, for two reasons:

- ``invoice.month = @invoice_month`` is the exact filter: Google invoices by it, and rows of a
  month keep arriving after it ends (late usage reports, corrections), so usage or export times
  never decide which month a row belongs to.
- A time window on the table's partitioning column only prunes: ``invoice.month`` is an
  ordinary column, so without it BigQuery scans (and bills) the whole table, years of data.
  The window is the month widened by ``slack`` days on both sides, because an invoice month
  holds usage reported late from the previous month, usage from the first hours of the next
  UTC month (Google's invoice month follows US/Pacific time), and rows exported days after the
  month ends (corrections until the invoice closes).

The table reference is built only from names that passed the naming rules, and quoted with
backticks; values are query parameters, never text in the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from revshare.periods import Period

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")

#: BigQuery parameter type of the partition bounds, by partitioning column type.
ParamType = Literal["TIMESTAMP", "DATE", "DATETIME"]
_BOUND_TYPES: dict[str, ParamType] = {
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "DATE",
    "DATETIME": "DATETIME",
}


class BadName(ValueError):
    """A project, dataset, table or column name outside BigQuery's (safe) naming rules."""


def table_ref(project: str, dataset: str, table: str) -> str:
    """```project.dataset.table``` from validated parts; raise BadName for anything else."""
    if not _PROJECT.match(project):
        raise BadName(f"not a Google Cloud project id: {project!r}")
    for kind, name in (("dataset", dataset), ("table", table)):
        if not _NAME.match(name):
            raise BadName(f"not a BigQuery {kind} name (A-Z, a-z, 0-9, _): {name!r}")
    return f"`{project}.{dataset}.{table}`"


@dataclass(frozen=True)
class Partitioning:
    """How the table is time-partitioned, from its metadata.

    ``column`` is the partitioning column, ``_PARTITIONTIME`` for ingestion-time tables (the
    form Google's export creates), or None for an unpartitioned table (nothing to prune).
    """

    column: str | None
    bound_type: ParamType = "TIMESTAMP"


def partitioning(field: str | None, partitioned: bool, column_type: str | None) -> Partitioning:
    """Partitioning from ``table.time_partitioning`` (its field) and the field's type."""
    if not partitioned:
        return Partitioning(None)
    if field is None:
        return Partitioning("_PARTITIONTIME", "TIMESTAMP")
    if not _COLUMN.match(field):
        raise BadName(f"unexpected partitioning column name: {field!r}")
    bound = _BOUND_TYPES.get((column_type or "").upper())
    if bound is None:
        raise BadName(f"partitioning column {field} has unsupported type {column_type}")
    return Partitioning(field, bound)


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    value: str | date | datetime


@dataclass(frozen=True)
class ExportQuery:
    sql: str
    params: tuple[Param, ...]


def window(period: Period, slack_days: int) -> tuple[datetime, datetime]:
    """The partition window [start, end) for ``period``: the month +- ``slack_days``."""
    return (
        period.start - timedelta(days=slack_days),
        period.end + timedelta(days=slack_days),
    )


def _bound(value: datetime, kind: ParamType) -> date | datetime:
    if kind == "DATE":
        return value.date()
    if kind == "DATETIME":
        return value.replace(tzinfo=None)  # DATETIME has no zone; the window is in UTC
    return value


def month_filter(
    period: Period, part: Partitioning, slack_days: int
) -> tuple[list[str], list[Param]]:
    """The WHERE terms (and their parameters) that select one invoice month, pruned."""
    params = [Param("invoice_month", "STRING", period.compact)]
    where = ["invoice.month = @invoice_month"]
    if part.column is not None:
        lo, hi = window(period, slack_days)
        params += [
            Param("window_start", part.bound_type, _bound(lo, part.bound_type)),
            Param("window_end", part.bound_type, _bound(hi, part.bound_type)),
        ]
        # Plain comparisons on the bare column: wrapping it in a function defeats pruning.
        where += [f"{part.column} >= @window_start", f"{part.column} < @window_end"]
    return where, params


def export_query(ref: str, period: Period, part: Partitioning, slack_days: int) -> ExportQuery:
    """``SELECT *`` of one invoice month, nested RECORD/REPEATED columns as they are."""
    where, params = month_filter(period, part, slack_days)
    sql = f"SELECT * FROM {ref} WHERE " + " AND ".join(where)
    return ExportQuery(sql, tuple(params))


#: The prefix of the SKU key of rows without a SKU (tax, rounding error): the normalizer's
#: x_SkuKey is ``coalesce(sku.description, 'gcp:' || cost_type)`` (``helpers.billing_sql``).
NO_SKU = "gcp:"


def lines_query(
    ref: str, period: Period, part: Partitioning, slack_days: int, sku_keys: tuple[str, ...]
) -> ExportQuery:
    """Pushdown, after reconciling: ``SELECT *`` of the month's rows of ``sku_keys`` only (the
    lines behind discrepancies), as the full pull gives them.

    The normalizer's key, written without building it: the SKU description, or for a row
    without one ``gcp:`` + its cost type. (The emulator the tests use drops every RECORD
    column from ``SELECT *`` when the WHERE calls CONCAT.) Keys are STRING parameters, never
    SQL text."""
    where, params = month_filter(period, part, slack_days)
    keys = tuple(sku_keys) or ("",)  # IN () is not SQL; no row has an empty key
    types = tuple(k.removeprefix(NO_SKU) for k in keys if k.startswith(NO_SKU)) or ("",)
    params += [Param(f"sku_{i}", "STRING", k) for i, k in enumerate(keys)]
    params += [Param(f"cost_type_{i}", "STRING", t) for i, t in enumerate(types)]
    in_keys = ", ".join(f"@sku_{i}" for i in range(len(keys)))
    in_types = ", ".join(f"@cost_type_{i}" for i in range(len(types)))
    where.append(
        f"(sku.description IN ({in_keys}) "
        f"OR (sku.description IS NULL AND cost_type IN ({in_types})))"
    )
    sql = f"SELECT * FROM {ref} WHERE " + " AND ".join(where)
    return ExportQuery(sql, tuple(params))
