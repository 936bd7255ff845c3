"""AWS Data Exports, CUR 2.0 in Parquet: the period's manifest drives which files to read.

AWS rewrites the manifest of a billing period on every refresh, after all data files are in
place, and lists the files by full ``s3://`` URI. So ``locate`` reads the manifest rather than
listing folders (in create-new mode old execution folders stay beside the new one), maps each
URI to the local mirror, and refuses a delivery with a listed file missing. The manifest's
``executionId`` is the delivery's version: a new id for a period means AWS restated it.

Legacy CUR (``lineItem/UsageStartDate`` columns, ``assemblyId`` manifests, ``yyyymmdd-yyyymmdd``
folders) is rejected by name: it looks similar enough to be misread silently otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import duckdb

from connectors.aws_cur2 import exports
from connectors.aws_cur2 import helpers as h
from connectors.aws_cur2.settings import AwsCur2Settings
from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NativeRelation,
    NormalizeContext,
)
from revshare.periods import Period
from revshare.sqlutil import lit

__all__ = ["AwsCur2Connector", "AwsCur2Settings"]


class AwsCur2Connector(Connector):
    type: ClassVar[str] = "aws_cur2"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("parquet",), restates=True, late_days=3
    )
    settings_model: ClassVar[type[ConnectorSettings]] = AwsCur2Settings
    settings: AwsCur2Settings

    # -- locate / fetch --------------------------------------------------------------------

    def locate(self, period: Period) -> Delivery:
        """The files the period's manifest lists, plus the manifest itself (for provenance)."""
        if self.settings.remote is not None:
            raise self.error(
                f"this source is remote ({self.settings.path}): it is pulled with fetch(), "
                "not read in place"
            )
        return self._delivery(self.local_root(self.settings.path), period)

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Local folder: ``locate``. ``s3://`` path: download the delivery the period's manifest
        names into ``staging`` (same layout as a local mirror), then read it exactly as a
        local one, so every local check (legacy CUR, Parquet footer, columns) applies too."""
        loc = self.settings.remote
        if loc is None:
            return self.locate(period)
        from connectors.aws_cur2 import remote  # boto3 only when pulling

        name = self.settings.export_name
        pulled = remote.pull(
            self.settings, loc, name, period, staging, self.error, self._legacy_precheck
        )
        delivery = self._delivery(staging, period)
        meta = {**delivery.metadata, "source": loc.uri(), "manifestETag": pulled.manifest_etag}
        return Delivery(delivery.files, delivery.version, meta)

    def _delivery(self, root: Path, period: Period) -> Delivery:
        name = self.settings.export_name
        found = exports.locate_local(root, name, period, self.error, self._legacy_precheck)
        if found is None:
            legacy = root / name / f"{period.start:%Y%m%d}-{period.end:%Y%m%d}"
            if legacy.is_dir():
                raise self.error(
                    h.LEGACY_MESSAGE.format(why=f"legacy period folder {legacy.name}/"),
                    file=f"{name}/{legacy.name}",
                )
            raise self.error(
                f"no CUR 2.0 manifest for {period} (AWS writes it after the data files; the "
                f"export may not have run yet) under {root}",
                file=exports.manifest_relpath(name, period),
            )
        manifest = found.manifest
        files = [NativeFile(root / manifest.relpath, manifest.relpath)]
        for relpath in found.data:
            self._check_data_file(root / relpath, relpath)
            files.append(NativeFile(root / relpath, relpath))
        return Delivery(
            files=tuple(sorted(files, key=lambda f: f.relpath)),
            version=manifest.execution_id,
            metadata={
                "executionId": manifest.execution_id,
                "exportArn": manifest.export_arn,
                "manifest": manifest.relpath,
                "billingPeriod": str(period),
            },
        )

    def _legacy_precheck(self, manifest: dict[str, Any], relpath: str) -> None:
        """Legacy CUR manifests look alike but lack executionId: say what they are instead."""
        if "assemblyId" in manifest or "reportKeys" in manifest:
            raise self.error(
                h.LEGACY_MESSAGE.format(why="manifest with assemblyId/reportKeys"), file=relpath
            )
        columns = manifest.get("columns") or []
        names = [c.get("name", "") for c in columns if isinstance(c, dict)]
        reason = h.legacy_reason(names) or (
            "manifest columns carry a category"
            if any(isinstance(c, dict) and "category" in c for c in columns)
            else None
        )
        if reason:
            raise self.error(h.LEGACY_MESSAGE.format(why=reason), file=relpath)

    def _check_data_file(self, path: Path, relpath: str) -> None:
        """Sniff the format from the header or footer only; reading happens in normalize."""
        lower = relpath.lower()
        if lower.endswith((".csv", ".csv.gz")):
            reason = h.legacy_reason(h.csv_header(path))
            if reason:
                raise self.error(h.LEGACY_MESSAGE.format(why=reason), file=relpath)
            raise self.error(
                "CSV delivery is not supported: configure the CUR 2.0 export to write Parquet",
                file=relpath,
            )
        if not lower.endswith(".parquet"):
            raise self.error("not a Parquet data file", file=relpath)
        self._parquet_types(path, relpath)

    def _parquet_types(self, path: Path, relpath: str) -> dict[str, Any]:
        try:
            schema = h.parquet_schema(path)
        except Exception as e:  # pyarrow raises several types for a damaged footer
            raise self.error(f"cannot read as Parquet: {e}", file=relpath) from None
        reason = h.legacy_reason(schema.names)
        if reason:
            raise self.error(h.LEGACY_MESSAGE.format(why=reason), file=relpath)
        missing = [c for c in h.REQUIRED if c not in schema.names]
        if missing:
            raise self.error(
                f"CUR 2.0 file lacks required column(s) {', '.join(missing)}",
                file=relpath,
                column=missing[0],
            )
        return {f.name: f.type for f in schema}

    # -- normalize ------------------------------------------------------------------------

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        data = [f for f in ctx.files if not f.lower().endswith("-manifest.json")]
        if not data:
            raise self.error(f"snapshot {ctx.snapshot_id} holds no CUR 2.0 data files")
        layouts = []
        for relpath in data:
            path = ctx.file(relpath)
            self._check_data_file(path, relpath)
            layouts.append(h.FileLayout(relpath, path, self._parquet_types(path, relpath)))
        groups = h.group_files(layouts)
        con = duckdb.connect()
        try:
            for group in groups:
                self._check_values(con, group, ctx.period)
        finally:
            con.close()
        parts = [h.select_sql(g, ctx.period, ctx.partner_id, ctx.snapshot_id) for g in groups]
        return self.union_files(parts)

    def _check_values(self, con: duckdb.DuckDBPyConnection, group: h.Group, period: Period) -> None:
        """Name the first row lacking a value we need, instead of failing mid-query later."""
        try:
            bad = con.sql(h.check_sql(group, period)).fetchone()
        except duckdb.Error as e:
            if len(group.files) > 1:  # which file: each alone, to name it
                for lay in group.files:
                    self._check_values(con, h.Group((lay,)), period)
            raise self.error(f"cannot read CUR 2.0 data: {e}", file=group.lay.relpath) from None
        if bad:
            raise self.error("missing or unreadable value", file=bad[0], row=bad[1], column=bad[2])

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every data row of the snapshot's Parquet files; rows of another billing period
        (a file can hold several) are rejected with that reason."""
        parts = []
        for relpath in ctx.files:
            if relpath.lower().endswith(".parquet"):
                path = ctx.file(relpath)
                lay = h.FileLayout(relpath, path, self._parquet_types(path, relpath))
                keep = [(h.in_period_sql(lay, ctx.period), "other billing period")]
                parts.append(
                    self.accounting_part(relpath, h.scan_sql(path), "file_row_number + 1", keep)
                )
        return "\nUNION ALL\n".join(parts)

    # -- validation -----------------------------------------------------------------------

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """Each landed data file as AWS wrote it, for the ``aws_cur2`` suite."""
        return [
            NativeRelation(
                "aws_cur2",
                rel,
                f"SELECT * FROM read_parquet({lit(ctx.file(rel))}, hive_partitioning = false)",
            )
            for rel in ctx.files
            if rel.lower().endswith(".parquet")
        ]
