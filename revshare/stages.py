"""The stages of a run, as plain functions the flows call: extract, normalize, reconcile.

Connectors are passed in (duck-typed), never imported, so the core stays free of cloud SDKs.
Outputs are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb

from revshare.catalog import map_keys, mapped_sql, register_rules
from revshare.config import PartnerCatalog
from revshare.db import connect, each_on_cursors
from revshare.errors import SourceError
from revshare.outcome import RowAccounting
from revshare.periods import Period
from revshare.sqlutil import lit
from revshare.store import Snapshot, land

#: Row groups capped in bytes rather than at DuckDB's 122,880 rows, for the wide files a run
#: writes (decoded copies, canonical lines): the writer holds a row group per thread, and wide
#: rows under the memory cap spilled. An Azure CSV part under a 500 MB cap decoded in 7.7 s in
#: insertion order with row-count row groups, 1.5 s with a byte cap. 128 MB keeps about the
#: default row count for canonical lines (89 row groups for 9.6M CUR lines; 32 MB gave 338,
#: and the canonical checks took 20.1 s instead of 17.9 s). DuckDB allows a byte cap only
#: without insertion order, which these files do not need: every line carries its source row.
ROW_GROUP_BYTES = ", ROW_GROUP_SIZE_BYTES '128MB'"
#: Decoded copies take a quarter of that. Two files decode at once, each writer holding its
#: row group of up to 66 text columns: at 10M lines a process decoding Azure's 40 parts
#: peaked at 1.39 GB with 128 MB, 1.03 GB with 64 MB (Cloud Billing's 41 shards 1.02 ->
#: 0.69 GB), in the same time; Azure's normalize over the copies took 39.3 s instead of 43.6 s
#: (72 CPU-s instead of 82: a 233,000-row part is more than one or two row groups to share
#: between threads); its native suites, 5.2 to 5.6 s either way. Uncompressed copies, later:
#: 1.24 GB with 64 MB, 0.97 and 1.07 GB with 32 MB (Cloud Billing 0.74 -> 0.59 GB), decode
#: and the canonical COPY after it in the same time; 16 MB gave nothing more (1.02 GB).
DECODED_ROW_GROUP_BYTES = ", ROW_GROUP_SIZE_BYTES '32MB'"
#: Decoded copies are not compressed: they live only while their source is processed, and
#: snappy cost more than their size saves. At 10M lines, in a process of its own, Azure's 40
#: parts decoded in 35.2 to 41.8 s uncompressed (993 MB; median 36.2 s of seven runs)
#: against 37.5 to 46.0 s with Parquet's default snappy (686 MB; median 39.3 s), and 71 to 73
#: CPU-seconds against 75 to 79 in the two runs of each that counted them;
#: Cloud Billing's 41 shards in 28.2 to 30.6 s against 29.3 to 33.8 s (666 against 423 MB).
#: Peak memory stayed within the same range, and normalizing over the copies took no longer.
DECODED_OPTIONS = f"FORMAT parquet, COMPRESSION uncompressed{DECODED_ROW_GROUP_BYTES}"
#: How a source's canonical lines are written (``write_canonical``).
CANONICAL_OPTIONS = f"FORMAT parquet, COMPRESSION zstd{ROW_GROUP_BYTES}"
#: The row accounting's cap. Its hash tables (every native row's key, and the lines' distinct
#: source rows) took a 10M-line source's normalize to its peak: 1.24 to 1.46 GB in a process
#: of its own under the 1 GB cap, 0.85 to 0.95 GB under this one (below the canonical COPY's),
#: for 0.6 to 1.1 s more a source as the joins spill.
ACCOUNTING_MEMORY = "512MB"


class ConnectorLike(Protocol):
    source_name: str

    def fetch(self, period: Period, staging: Path) -> Any: ...
    def normalize_sql(self, ctx: Any) -> str: ...


@dataclass(frozen=True)
class Normalized:
    path: Path
    rows: int
    accounting: RowAccounting | None = None


def extract(connector: ConnectorLike, period: Period, landing_root: Path) -> Snapshot:
    """Fetch the newest complete delivery and land it as an immutable snapshot.

    Remote connectors download into a staging folder inside the landing root (same disk, so
    landing is a local copy) that is removed whatever happens."""
    landing_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=landing_root))
    try:
        delivery = connector.fetch(period, staging)
        return land(
            delivery.files, landing_root, source=connector.source_name, version=delivery.version
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def decode(
    connector: ConnectorLike, ctx: Any, out_dir: Path, *, temp_dir: Path | None = None
) -> Any:
    """Parse each landed text file the connector names (``decode_sql``) once, into Parquet
    under ``out_dir``, and return the context that reads those copies.

    A gzipped JSON or CSV month is otherwise parsed by every pass over it: native validation,
    the connector's value checks, the canonical SELECT and the row accounting. Decoding is
    only an optimization, never a new way to fail: if any file cannot be decoded, the
    context is returned as it was, and the connector's own reading of the landed files names
    the file, row and column at fault."""
    plan = getattr(connector, "decode_sql", None)
    if plan is None:
        return ctx
    try:
        sqls = {rel: sql for rel in ctx.files if (sql := plan(ctx, rel))}
    except SourceError:
        return ctx
    if not sqls:
        return ctx
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    con = connect(temp_dir=temp_dir)
    decoded = {rel: out_dir / f"{i:05d}.parquet" for i, rel in enumerate(sqls)}
    try:
        # Files at once: a 1M-line Cloud Billing month decoded at 1.2 cores one at a time.
        each_on_cursors(con, _copy, [(sqls[rel], target) for rel, target in decoded.items()])
    except duckdb.Error:
        shutil.rmtree(out_dir, ignore_errors=True)
        return ctx
    finally:
        con.close()
    return dataclasses.replace(ctx, decoded=decoded)


def _copy(cur: duckdb.DuckDBPyConnection, job: tuple[str, Path]) -> None:
    """``COPY (sql) TO path``: a file's rows carry their row number, so without insertion
    order (which lets DuckDB cap the row groups' bytes, ``DECODED_ROW_GROUP_BYTES``)."""
    cur.execute("SET preserve_insertion_order = false")
    cur.execute(f"COPY ({job[0]}) TO {lit(job[1])} ({DECODED_OPTIONS})")


def normalize(
    connector: ConnectorLike,
    ctx: Any,
    out: Path,
    *,
    catalog: PartnerCatalog | None = None,
    temp_dir: Path | None = None,
) -> Normalized:
    """Run the connector's SELECT (through the catalog for billing) into one Parquet file."""
    con = connect(temp_dir=temp_dir)
    sql = connector.normalize_sql(ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if catalog is not None:
            register_rules(con, catalog)
            map_keys(con, sql, catalog)
            sql = mapped_sql(sql)
        write_canonical(con, sql, tmp)
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        con.close()
        _diagnose(connector, ctx)
        raise SourceError(
            connector.source_name,
            f"could not normalize: {_first_line(exc)}",
            file=_unreadable(connector, ctx),
        ) from exc
    rows = con.execute(f"SELECT count(*) FROM read_parquet({lit(tmp)})").fetchone()[0]
    con.execute(f"SET memory_limit = '{ACCOUNTING_MEMORY}'")  # the accounting is all that is left
    try:
        acc = account(con, connector, ctx, tmp)
    except SourceError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return Normalized(out, rows, acc)


def write_canonical(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> None:
    """The canonical SELECT ``sql`` into ``out``, as every source's lines are written."""
    con.execute("SET preserve_insertion_order = false")  # lines have no order
    con.execute(f"COPY ({sql}) TO {lit(out)} ({CANONICAL_OPTIONS})")


def account(
    con: duckdb.DuckDBPyConnection, connector: ConnectorLike, ctx: Any, canonical: Path
) -> RowAccounting | None:
    """Count, in SQL, where every native row went, and refuse the source if one went missing.

    The connector lists its native rows with a rejection reason or none (kept); the rows kept
    must be exactly the distinct (x_SourceFile, x_SourceRow) of the canonical lines. A row kept
    but absent from the lines (a join that dropped it) or a line from no kept row both break
    rows read = rows normalized + rows rejected, and the source is quarantined."""
    acc_sql = getattr(connector, "row_accounting_sql", lambda _ctx: None)(ctx)
    if not acc_sql:
        return None
    try:
        names = _file_names(con, ctx, canonical)
        counts = con.execute(_accounting_sql(acc_sql, canonical, hashed=True), [names]).fetchone()
        if counts[-1]:  # a row names a file outside the snapshot and the lines: exact keys
            counts = con.execute(_accounting_sql(acc_sql, canonical, hashed=False)).fetchone()
    except duckdb.Error as exc:
        raise SourceError(
            connector.source_name,
            f"could not count rows: {_first_line(exc)}",
            file=_unreadable(connector, ctx),
        ) from exc
    read, rejected, normalized, matched, reasons, _ = counts
    result = RowAccounting(
        read, normalized, rejected, tuple((d["reason"], d["rows"]) for d in reasons or [])
    )
    if not result.balanced or matched != normalized:
        raise SourceError(
            connector.source_name,
            f"rows do not add up: {result.summary()}; {normalized - matched} canonical source "
            "row(s) match no kept native row",
        )
    return result


def _file_names(con: duckdb.DuckDBPyConnection, ctx: Any, canonical: Path) -> list[str]:
    """The paths rows may name: the snapshot's files and those the lines name."""
    names = set(getattr(ctx, "files", ()) or ())
    lines = con.execute(
        f'SELECT DISTINCT "x_SourceFile" FROM read_parquet({lit(canonical)}) '
        'WHERE "x_SourceFile" IS NOT NULL'
    ).fetchall()
    return sorted(names | {r[0] for r in lines})


def _accounting_sql(acc_sql: str, canonical: Path, *, hashed: bool) -> str:
    """Rows read, rejected, normalized (distinct canonical source rows) and matched (those
    that are kept native rows), the rejection reasons, and whether the file keys may be wrong.

    Every row carries its file's path, often a hundred characters: the native rows, held for
    the counts (spilled), then joined on (path, row), took 8.7 s of a 10M-line CUR month's
    29 s normalize; on the path's 64-bit hash, 2.8 s. ``hashed`` keys files by that hash, and
    the last column is true when it cannot be trusted: two of the paths ``$1`` (the names
    rows may carry, ``_file_names``) share a hash, or a native row names a path outside
    them. The caller then counts again with the paths themselves (``hashed=False``)."""
    key = "CASE WHEN {0} IS NOT NULL THEN hash({0}) END" if hashed else "{0}"  # NULL joins nothing
    names = "(SELECT hash(n) FROM unnest($1::VARCHAR[]) AS k(n))"
    doubt = (
        f"(SELECT count(DISTINCT h) <> count(*) FROM {names} AS u(h))"
        f" OR EXISTS (SELECT 1 FROM acc WHERE f NOT IN {names})"
        if hashed
        else "false"
    )
    # MATERIALIZED: the native files are scanned once, however often the counts refer to them.
    return f"""WITH acc AS MATERIALIZED (
    SELECT {key.format("src_file")} AS f, src_row, reason FROM ({acc_sql})),
canon AS MATERIALIZED (SELECT DISTINCT {key.format('"x_SourceFile"')} AS f, "x_SourceRow" AS r
          FROM read_parquet({lit(canonical)}))
SELECT (SELECT count(*) FROM acc),
       (SELECT count(*) FROM acc WHERE reason IS NOT NULL),
       (SELECT count(*) FROM canon),
       (SELECT count(*) FROM canon JOIN acc ON acc.f = canon.f
          AND acc.src_row = canon.r AND acc.reason IS NULL),
       (SELECT list({{'reason': reason, 'rows': n}} ORDER BY reason) FROM
          (SELECT reason, count(*) AS n FROM acc WHERE reason IS NOT NULL GROUP BY reason)),
       {doubt}"""


def _diagnose(connector: ConnectorLike, ctx: Any) -> None:
    """Let the connector name the bad value its SELECT failed on (error path only)."""
    diagnose = getattr(connector, "diagnose", None)
    if diagnose is not None:
        diagnose(ctx)


def _unreadable(connector: ConnectorLike, ctx: Any) -> str | None:
    """Which landed file the engine choked on, when the connector can tell (error path only)."""
    find = getattr(connector, "unreadable_file", None)
    return find(ctx) if find is not None else None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def snapshot_context(ctx_type: type, partner: str, period: Period, snap: Snapshot) -> Any:
    """Build the connector's NormalizeContext for a landed snapshot."""
    return ctx_type(partner, period, snap.id, snap.dir, snap.files)
