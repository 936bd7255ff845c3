"""Generic FOCUS connector: FOCUS 1.0 to 1.3 files (CSV, CSV.gz, Parquet) in a local folder,
or an AWS Data Exports FOCUS export (manifest-driven), on disk or pulled from S3.

FOCUS is our canonical target, so this connector maps names one to one. What it adds is the
checking a foreign FOCUS file needs before we trust it: every header is matched by name, the
version is detected from the columns present, mandatory columns must exist and hold values,
money is read from text (never through a double) into DECIMAL(38,12), and zoneless timestamps
are taken as UTC, as the specification says they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import duckdb

from connectors.aws_cur2 import exports
from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NativeRelation,
    NormalizeContext,
)
from connectors.focus import helpers as h
from connectors.focus.settings import FocusSettings
from revshare.periods import Period
from revshare.schema import FOCUS_COLUMNS, billing_select_sql
from revshare.sqlutil import lit

__all__ = ["FocusConnector", "FocusSettings"]


class FocusConnector(Connector):
    type: ClassVar[str] = "focus"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("csv", "csv.gz", "parquet"), restates=False, late_days=0
    )
    settings_model: ClassVar[type[ConnectorSettings]] = FocusSettings
    settings: FocusSettings

    def locate(self, period: Period) -> Delivery:
        """The delivery on disk: the manifest's files (``export_name`` set) or the folder's."""
        if self.settings.remote is not None:
            raise self.error(
                f"this source is remote ({self.settings.path}): it is pulled with fetch(), "
                "not read in place"
            )
        root = self.local_root(self.settings.path)
        if self.settings.export_name is not None:
            return self._export_delivery(root, period)
        return self._folder_delivery(root, period)

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Local: ``locate``. ``s3://``: pull the AWS FOCUS export's current delivery (the
        period's manifest and exactly the files it lists) into ``staging`` in the on-disk
        layout, then read it as a local export, so both modes share every check."""
        loc = self.settings.remote
        name = self.settings.export_name
        if loc is None or name is None:
            return self.locate(period)
        from connectors.aws_cur2 import remote  # boto3 only when pulling

        pulled = remote.pull(self.settings, loc, name, period, staging, self.error)
        delivery = self._export_delivery(staging, period)
        meta = {**delivery.metadata, "source": loc.uri(), "manifestETag": pulled.manifest_etag}
        return Delivery(delivery.files, delivery.version, meta)

    def _export_delivery(self, root: Path, period: Period) -> Delivery:
        """An AWS Data Exports FOCUS export: the manifest names the files (older executions
        stay beside the current one and must not be read); its executionId is the version."""
        name = self.settings.export_name
        assert name is not None
        found = exports.locate_local(root, name, period, self.error)
        if found is None:
            raise self.error(
                f"no Data Exports manifest for {period} under {root} (AWS writes it after the "
                "data files; the export may not have run yet)",
                file=exports.manifest_relpath(name, period),
            )
        for rel in found.data:
            if h.data_format(rel) is None:
                raise self.error("manifest lists a file that is not CSV or Parquet", file=rel)
        rels = [found.manifest.relpath, *found.data]
        return Delivery(
            files=tuple(NativeFile(root / r, r) for r in sorted(rels)),
            version=found.manifest.execution_id,
            metadata={
                "executionId": found.manifest.execution_id,
                "exportArn": found.manifest.export_arn,
                "manifest": found.manifest.relpath,
                "files": str(len(found.data)),
            },
        )

    def _folder_delivery(self, root: Path, period: Period) -> Delivery:
        """Every data file under the folder, sorted by relative path.

        A FOCUS folder has no standard period layout, so the period is applied when reading
        (BillingPeriodStart); the delivery is simply the folder's current data files.
        """
        if not root.is_dir():
            raise self.error(f"FOCUS folder {root} does not exist")
        found: list[NativeFile] = []
        for p in root.glob(self.settings.glob):
            rel = p.relative_to(root)
            if (
                p.is_file()
                and h.data_format(p.name)
                and not any(part.startswith(".") for part in rel.parts)
            ):
                found.append(NativeFile(p, rel.as_posix()))
        if not found:
            raise self.error(
                f"no FOCUS data files (.csv, .csv.gz, .parquet) under {root} "
                f"matching {self.settings.glob!r} for {period}"
            )
        found.sort(key=lambda f: f.relpath)
        return Delivery(files=tuple(found), metadata={"files": str(len(found))})

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        # An export's snapshot also holds its manifest (provenance); only data files are read.
        data = [f for f in ctx.files if not self._is_manifest(f)]
        if not data:
            raise self.error(f"no files in snapshot {ctx.snapshot_id}")
        con = duckdb.connect()
        try:
            parts = [self._file_sql(con, ctx, relpath) for relpath in data]
        finally:
            con.close()
        return self.union_files(parts)

    def _is_manifest(self, relpath: str) -> bool:
        name = self.settings.export_name
        return name is not None and relpath.endswith(f"/{name}-Manifest.json")

    # -- per file -------------------------------------------------------------------------

    def _layout(self, con: duckdb.DuckDBPyConnection, path: Path, relpath: str) -> h.FileLayout:
        fmt = h.data_format(relpath) or h.data_format(path.name)
        if fmt is None:
            raise self.error("not a CSV, CSV.gz or Parquet file", file=relpath)
        scan = h.scan_sql(path, fmt)
        try:
            described = con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        except duckdb.Error as e:
            raise self.error(f"cannot read as {fmt}: {e}", file=relpath) from None
        # The reader appends the row number last; DuckDB renames it if a header clashes.
        *data_cols, (row_col, _, *_) = described
        columns = {name: typ for name, typ, *_ in data_cols}
        row_expr = h.q(row_col) + (" + 1" if fmt == "parquet" else "")
        names = set(columns)
        reason = h.not_focus_reason(names)
        if reason:
            raise self.error(reason, file=relpath)
        layout = h.FileLayout(relpath, fmt, columns, row_expr, h.detect_version(names))
        for name in h.REQUIRED:
            if h.source_name(layout, name) is None:
                raise self.error(
                    f"{layout.label} lacks the mandatory column {name}", file=relpath, column=name
                )
        key = self.settings.sku_key_column
        if not layout.has(key) and key not in h.FOCUS_NAMES:
            # A custom key column that is missing means the settings do not fit this data.
            raise self.error(
                f"{layout.label} lacks the configured sku_key_column {key}",
                file=relpath,
                column=key,
            )
        return layout

    def _file_sql(self, con: duckdb.DuckDBPyConnection, ctx: NormalizeContext, relpath: str) -> str:
        path = ctx.file(relpath)
        layout = self._layout(con, path, relpath)
        scan = h.scan_sql(path, layout.fmt)
        exprs: dict[str, str] = {}
        for col in FOCUS_COLUMNS:
            try:
                expr = h.value_expr(layout, col.name)
            except TypeError as e:
                raise self.error(f"{layout.label}: {e}", file=relpath, column=col.name) from None
            if expr is not None:
                exprs[col.name] = expr
        try:
            bad = con.sql(h.check_sql(layout, scan)).fetchone()
        except duckdb.Error as e:
            raise self.error(f"cannot read {layout.label}: {e}", file=relpath) from None
        if bad:
            row, column, value, why = bad
            raise self.error(
                f"{layout.label}: {column} {why}: {value!r}",
                file=relpath,
                row=int(row),
                column=column,
            )
        row = layout.row_expr
        exprs.update(
            {
                "x_PartnerId": lit(ctx.partner_id),
                "x_SnapshotId": lit(ctx.snapshot_id),
                "x_SourceFile": lit(relpath),
                "x_SourceRow": row,
                "x_NativeLineId": f"{lit(relpath + ':')} || CAST({row} AS VARCHAR)",
                "x_SkuKey": h.sku_key_expr(layout, self.settings.sku_key_column),
            }
        )
        where = [cond for cond, _ in self._keep(exprs, ctx.period)]
        return f"SELECT {billing_select_sql(exprs)}\nFROM {scan} AS src\nWHERE " + " AND ".join(
            where
        )

    def _keep(self, exprs: dict[str, str], period: Period) -> list[tuple[str, str]]:
        """The filters between a file's rows and its lines, each with its rejection reason."""
        start = exprs["BillingPeriodStart"]
        keep = [
            (
                f"{start} >= CAST({lit(period.start.isoformat())} AS TIMESTAMPTZ) AND "
                f"{start} < CAST({lit(period.end.isoformat())} AS TIMESTAMPTZ)",
                "other billing period",
            )
        ]
        if self.settings.provider_name is not None:
            keep.append(
                (f"{exprs['ProviderName']} = {lit(self.settings.provider_name)}", "other provider")
            )
        return keep

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every data row of the snapshot's files, rejected for another billing period or,
        when ``provider_name`` is set, another provider."""
        parts = []
        con = duckdb.connect()
        try:
            for relpath in ctx.files:
                if self._is_manifest(relpath):
                    continue
                path = ctx.file(relpath)
                layout = self._layout(con, path, relpath)
                exprs = {
                    c: h.value_expr(layout, c) or "NULL"
                    for c in ("BillingPeriodStart", "ProviderName")
                }
                keep = self._keep(exprs, ctx.period)
                scan = f"{h.scan_sql(path, layout.fmt)} AS src"
                parts.append(self.accounting_part(relpath, scan, layout.row_expr, keep))
        finally:
            con.close()
        return "\nUNION ALL\n".join(parts)

    # -- validation -----------------------------------------------------------------------

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """Each FOCUS data file for the ``focus`` suite; ``x_`` extension columns are left out
        (vendors add them freely, so they are not schema drift)."""
        out = []
        for rel in ctx.files:
            fmt = h.data_format(rel)
            if fmt is None or self._is_manifest(rel):
                continue
            path = lit(ctx.file(rel))
            read = (
                f"read_parquet({path}, hive_partitioning = false)"
                if fmt == "parquet"
                else f"read_csv({path}, header = true, all_varchar = true, "
                "hive_partitioning = false, nullstr = ['NULL', ''])"
            )
            sql = f"SELECT COLUMNS(c -> NOT starts_with(c, 'x_')) FROM {read}"
            out.append(NativeRelation("focus", rel, sql))
        return out
