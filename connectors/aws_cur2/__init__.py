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

import json
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from connectors.aws_cur2 import helpers as h
from connectors.aws_cur2.settings import AwsCur2Settings
from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NormalizeContext,
)
from revshare.periods import Period

__all__ = ["AwsCur2Connector", "AwsCur2Settings"]


class AwsCur2Connector(Connector):
    type: ClassVar[str] = "aws_cur2"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing", formats=("parquet",), restates=True, late_days=3
    )
    settings_model: ClassVar[type[ConnectorSettings]] = AwsCur2Settings
    settings: AwsCur2Settings

    # -- locate ---------------------------------------------------------------------------

    def locate(self, period: Period) -> Delivery:
        """The files the period's manifest lists, plus the manifest itself (for provenance)."""
        root = self.local_root(self.settings.path)
        name = self.settings.export_name
        manifest_rel = f"{name}/metadata/BILLING_PERIOD={period}/{name}-Manifest.json"
        manifest_path = root / manifest_rel
        if not manifest_path.is_file():
            legacy = root / name / f"{period.start:%Y%m%d}-{period.end:%Y%m%d}"
            if legacy.is_dir():
                raise self.error(
                    h.LEGACY_MESSAGE.format(why=f"legacy period folder {legacy.name}/"),
                    file=f"{name}/{legacy.name}",
                )
            raise self.error(
                f"no CUR 2.0 manifest for {period} (AWS writes it after the data files; the "
                f"export may not have run yet) under {root}",
                file=manifest_rel,
            )
        manifest = self._read_manifest(manifest_path.read_bytes(), manifest_rel)

        marker = f"/{name}/data/BILLING_PERIOD={period}/"
        files: list[NativeFile] = [NativeFile(manifest_path, manifest_rel)]
        for uri in manifest["dataFiles"]:
            cut = uri.find(marker) if isinstance(uri, str) and uri.startswith("s3://") else -1
            if cut < 0:
                raise self.error(
                    f"manifest lists {uri!r}, which is not an s3:// URI inside this export's "
                    f"{period} partition",
                    file=manifest_rel,
                )
            relpath = uri[cut + 1 :]
            local = root / relpath
            if not local.is_file():
                raise self.error(
                    f"manifest (execution {manifest['executionId']}) lists {uri} but the file "
                    "is missing: the delivery is incomplete",
                    file=relpath,
                )
            self._check_data_file(local, relpath)
            files.append(NativeFile(local, relpath))
        return Delivery(
            files=tuple(sorted(files, key=lambda f: f.relpath)),
            version=manifest["executionId"],
            metadata={
                "executionId": manifest["executionId"],
                "exportArn": str(manifest.get("exportArn", "")),
                "manifest": manifest_rel,
                "billingPeriod": str(period),
            },
        )

    def _read_manifest(self, raw: bytes, relpath: str) -> dict[str, Any]:
        try:
            manifest = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.error(f"manifest is not valid JSON: {e}", file=relpath) from None
        if not isinstance(manifest, dict):
            raise self.error("manifest is not a JSON object", file=relpath)
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
        exec_id = manifest.get("executionId")
        if not isinstance(exec_id, str) or not exec_id:
            raise self.error("manifest has no executionId", file=relpath)
        data = manifest.get("dataFiles")
        if not isinstance(data, list) or not data:
            raise self.error("manifest lists no dataFiles", file=relpath)
        return manifest

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
        con = duckdb.connect()
        try:
            for lay in layouts:
                self._check_values(con, lay, ctx.period)
        finally:
            con.close()
        parts = [h.select_sql(lay, ctx.period, ctx.partner_id, ctx.snapshot_id) for lay in layouts]
        union = "\nUNION ALL\n".join(f"({p})" for p in parts)
        # One order, so a rerun over the same snapshot yields identical output.
        return f'SELECT * FROM (\n{union}\n) ORDER BY "x_SourceFile", "x_SourceRow"'

    def _check_values(
        self, con: duckdb.DuckDBPyConnection, lay: h.FileLayout, period: Period
    ) -> None:
        """Name the first row lacking a value we need, instead of failing mid-query later."""
        try:
            bad = con.sql(h.check_sql(lay, period)).fetchone()
        except duckdb.Error as e:
            raise self.error(f"cannot read CUR 2.0 data: {e}", file=lay.relpath) from None
        if bad:
            raise self.error(
                "missing or unreadable value", file=lay.relpath, row=bad[0], column=bad[1]
            )
