"""Snowflake usage views (Cortex AI), from a local folder of Parquet unloads or a live account.

Reads CORTEX_FUNCTIONS_USAGE_HISTORY (per account), RATE_SHEET_DAILY and
USAGE_IN_CURRENCY_DAILY as unloaded per period (layout in README.md). Cortex rows are credits
only, so each is priced with the rate sheet's ai_services rate for its date; the daily view
adds every other usage type. See README.md for the mapping and why ai_services consumption is
taken from the Cortex view and not from the daily view. With ``account`` in the settings,
``fetch`` queries the views (``remote.py``, SDK loaded only then) into the same layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import duckdb

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NativeRelation,
    NormalizeContext,
    SourceError,
)
from connectors.snowflake_usage import helpers as h
from connectors.snowflake_usage.settings import SnowflakeUsageSettings
from revshare.periods import Period
from revshare.sqlutil import lit

__all__ = ["SnowflakeUsageConnector", "SnowflakeUsageSettings"]


class SnowflakeUsageConnector(Connector):
    type: ClassVar[str] = "snowflake_usage"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("parquet",), restates=True, late_days=3, pushdown=True
    )
    settings_model: ClassVar[type[ConnectorSettings]] = SnowflakeUsageSettings

    @property
    def root(self) -> Path:
        assert isinstance(self.settings, SnowflakeUsageSettings)
        if self.settings.path is None:
            raise self.error("remote source (settings give `account`): use fetch, not locate")
        return self.local_root(self.settings.path)

    # -- fetch ----------------------------------------------------------------------------

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Remote mode (``account`` set): query the views into ``staging`` in the unload
        layout, version = hash of the pulled content. Local mode: ``locate``."""
        assert isinstance(self.settings, SnowflakeUsageSettings)
        if not self.settings.remote:
            return self.locate(period)
        from connectors.snowflake_usage.remote import pull

        return pull(self, period, staging)

    def fetch_lines(self, period: Period, staging: Path, sku_keys: Sequence[str]) -> Delivery:
        """Pushdown: the Cortex and daily-view rows of ``sku_keys`` (and the period's rates,
        which price them), unaggregated, in the layout of a full pull."""
        assert isinstance(self.settings, SnowflakeUsageSettings)
        if not self.settings.remote:
            raise self.error("lines behind a pushdown need a live account")
        from connectors.snowflake_usage.remote import pull

        return pull(self, period, staging, tuple(sorted(set(sku_keys))))

    def line_weights_sql(self, ctx: NormalizeContext) -> str | None:
        """The Cortex rows of a pushdown snapshot: each stands for LINE_COUNT view rows."""
        parts = [
            f"SELECT {lit(rel)} AS src_file, CAST(file_row_number + 1 AS BIGINT) AS src_row, "
            "CAST(LINE_COUNT AS BIGINT) AS n "
            f"FROM read_parquet({lit(ctx.file(rel))}, file_row_number = true)"
            for rel in sorted(self._weighted_files(ctx))
        ]
        return " UNION ALL ".join(parts) or None

    def _weighted_files(self, ctx: NormalizeContext) -> set[str]:
        """Cortex files of the snapshot that a pushdown pull aggregated (have LINE_COUNT)."""
        out = set()
        con = duckdb.connect()
        try:
            for rel in ctx.files:
                if h.classify(rel) == h.CORTEX:
                    f = h.ViewFile(h.CORTEX, rel, str(ctx.file(rel)))
                    try:
                        if "LINE_COUNT" in self._columns(con, f):
                            out.add(rel)
                    except SourceError:
                        pass  # unreadable: the suites and normalize say so
        finally:
            con.close()
        return out

    # -- locate ---------------------------------------------------------------------------

    def locate(self, period: Period) -> Delivery:
        """The period folder's view files; the manifest, when present, names them and the
        version (an unload without one, e.g. a hand-run COPY INTO, is read from the listing)."""
        root, p = self.root, str(period)
        folder = root / p
        if not folder.is_dir():
            raise self.error(f"no unload for period {p}: folder {folder} is missing", file=p)
        found = {v: sorted((folder / v).glob("*.parquet")) for v in h.VIEWS}
        missing = [f"{p}/{v}/" for v, files in found.items() if not files]
        if missing:
            raise self.error(
                "unload incomplete, no Parquet files in view folder(s): " + ", ".join(missing),
                file=missing[0],
            )
        manifest = folder / h.MANIFEST
        if not manifest.is_file():
            paths = sorted(x for files in found.values() for x in files)
            return Delivery(files=tuple(self._native(root, x) for x in paths))
        return self._from_manifest(root, period, manifest)

    def _native(self, root: Path, path: Path) -> NativeFile:
        return NativeFile(path=path, relpath=path.relative_to(root).as_posix())

    def _from_manifest(self, root: Path, period: Period, manifest: Path) -> Delivery:
        rel = manifest.relative_to(root).as_posix()
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            listed, version = list(doc["files"]), doc["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise self.error(f"unreadable unload manifest: {exc}", file=rel) from exc
        if doc.get("period") != str(period):
            raise self.error(f"manifest is for period {doc.get('period')!r}", file=rel)
        absent = [f for f in listed if not (root / f).is_file()]
        if absent:
            raise self.error(f"manifest lists {len(absent)} missing file(s)", file=absent[0])
        files = tuple(self._native(root, root / f) for f in sorted(listed))
        return Delivery(files=files, version=str(version), metadata={"manifest": rel})

    # -- normalize ------------------------------------------------------------------------

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        con = duckdb.connect()
        try:
            selects = self._selects(con, ctx)
            sql = h.normalize_sql(selects, ctx.period, ctx.partner_id, ctx.snapshot_id)
            self._check(con, selects, ctx)
        finally:
            con.close()
        return sql

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Cortex and daily-view rows, each kept or rejected by the filters of ``ctes``."""
        con = duckdb.connect()
        try:
            return h.accounting_sql(self._selects(con, ctx), ctx.period)
        finally:
            con.close()

    def _selects(
        self, con: duckdb.DuckDBPyConnection, ctx: NormalizeContext
    ) -> dict[str, list[str]]:
        """Per-view SELECTs (one per set of files with the same columns), after checking each
        file has the view's columns."""
        selects: dict[str, list[str]] = {v: [] for v in h.VIEWS}
        layouts: dict[tuple[str, tuple[tuple[str, str], ...]], list[h.ViewFile]] = {}
        for relpath in ctx.files:
            view = h.classify(relpath)
            if view is None:
                raise self.error("not a file of the Snowflake unload layout", file=relpath)
            f = h.ViewFile(view, relpath, str(ctx.file(relpath)))
            types = self._columns(con, f)
            missing = [c for c in h.REQUIRED[f.view] if c not in types]
            if missing:
                hint = ""
                if f.view == h.CORTEX and "USAGE_TIME" in types:
                    hint = " (this looks like CORTEX_AISQL_USAGE_HISTORY, which is not supported)"
                raise self.error(
                    f"not a {f.view} unload: missing column(s) {', '.join(missing)}{hint}",
                    file=relpath,
                    column=missing[0],
                )
            for (view, col), prefix in h.TEMPORAL.items():
                if view == f.view and not types[col].startswith(prefix):
                    raise self.error(
                        f"{col} is {types[col]}, expected {prefix}", file=relpath, column=col
                    )
            layouts.setdefault((f.view, tuple(sorted(types.items()))), []).append(f)
        for (view, types_items), files in layouts.items():
            selects[view].append(h.file_select(files, dict(types_items)))
        for view, parts in selects.items():
            if not parts:
                raise self.error(f"snapshot holds no {view} file", file=f"{ctx.period}/")
        return selects

    def _columns(self, con: duckdb.DuckDBPyConnection, f: h.ViewFile) -> dict[str, str]:
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(f.path)})")
            rows = described.fetchall()
        except duckdb.Error as exc:
            raise self.error(f"unreadable Parquet file: {exc}", file=f.relpath) from exc
        return {name: typ for name, typ, *_ in rows}

    def _check(
        self, con: duckdb.DuckDBPyConnection, selects: dict[str, list[str]], ctx: NormalizeContext
    ) -> None:
        """Run the data checks; the first offending row, in file order, is the error."""
        with_ = h.ctes(selects, ctx.period)
        for message, column, query in h.CHECKS:
            try:
                bad = con.execute(
                    f"WITH {with_} SELECT * FROM ({query}) AS t(f, r, d) ORDER BY f, r LIMIT 1"
                ).fetchone()
            except duckdb.Error as exc:
                raise self.error(
                    f"cannot read the unload: {exc}", file=self.unreadable_file(ctx)
                ) from exc
            if bad:
                detail = f" ({bad[2]})" if bad[2] else ""
                raise self.error(message + detail, file=bad[0], row=int(bad[1]), column=column)

    # -- validation -----------------------------------------------------------------------

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """Each unloaded view file as Snowflake wrote it, for the suite of its view."""
        suites = {
            h.CORTEX: "snowflake_cortex_usage",
            h.DAILY: "snowflake_usage_in_currency_daily",
            h.RATES: "snowflake_rate_sheet_daily",
        }
        out = []
        weighted = self._weighted_files(ctx)
        for rel in ctx.files:
            view = h.classify(rel)
            if view is not None:
                # A pushdown file's LINE_COUNT is ours, not the view's: not schema drift.
                cols = '* EXCLUDE ("LINE_COUNT")' if rel in weighted else "*"
                sql = f"SELECT {cols} FROM read_parquet({lit(ctx.file(rel))})"
                out.append(NativeRelation(suites[view], rel, sql))
        return out
