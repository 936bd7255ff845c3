"""Azure Cost Management exports (cost details), from a local copy or from Blob Storage.

``locate`` picks the newest complete run of the export for a period: every run folder carries
a ``manifest.json`` that lists its blobs with their byte counts, and a month-to-date export
re-emits the whole month on every run, so the newest run whose blobs are all there (at the
promised size) is the delivery. With ``container`` in the settings, ``fetch`` makes the same
choice from blob listings and downloads only that run (``remote.py``; the SDK loads only
then). ``normalize_sql`` maps MCA and EA headers by name.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import ClassVar

import duckdb

from connectors.azure_cost import helpers, runs
from connectors.azure_cost.settings import AzureCostSettings
from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NativeRelation,
    NormalizeContext,
)
from revshare.db import connect, each_on_cursors
from revshare.errors import SourceError
from revshare.periods import Period

__all__ = ["AzureCostConnector", "AzureCostSettings"]


def _file_format(relpath: str) -> str | None:
    name = relpath.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def _local_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


class AzureCostConnector(Connector):
    type: ClassVar[str] = "azure_cost"
    capabilities: ClassVar[Capabilities] = Capabilities(
        produces="billing",
        formats=("csv.gz", "csv", "parquet"),
        restates=True,  # month-to-date: every run re-emits the month
        late_days=3,
    )
    settings_model: ClassVar[type[ConnectorSettings]] = AzureCostSettings

    @property
    def _settings(self) -> AzureCostSettings:
        assert isinstance(self.settings, AzureCostSettings)
        return self.settings

    # -- locate / fetch -----------------------------------------------------------------------

    def locate(self, period: Period) -> Delivery:
        if self._settings.remote:
            raise self.error(f"export is read from container {self._settings.container!r}: "
                             "use fetch(period, staging), not locate")  # fmt: skip
        return self.locate_under(self.local_root(self._settings.path), period)

    def fetch(self, period: Period, staging: Path) -> Delivery:
        """Remote mode: download the newest complete run into ``staging``; else ``locate``."""
        if not self._settings.remote:
            return self.locate(period)
        from connectors.azure_cost import remote  # the SDK is imported only when pulling

        return remote.fetch_run(self, period, staging)

    def _range_dirs(self, root: Path, period: Period) -> list[Path]:
        """Date-range folders of the period: start on its first day, end inside it."""
        export_dir = root / self._settings.export_name
        if not export_dir.is_dir():
            raise self.error(f"export folder not found: {export_dir}")
        return [
            d
            for d in sorted(export_dir.iterdir())
            if d.is_dir() and runs.range_matches(d.name, period)
        ]

    def locate_under(self, root: Path, period: Period) -> Delivery:
        """The newest complete run under ``root`` (CONTAINER/ROOT on disk, or fetch's staging)."""
        complete: list[tuple[runs.Run, Path]] = []
        skipped: list[str] = []
        for range_dir in self._range_dirs(root, period):
            # Both depths occur: RUN/manifest.json and EXPORTTIME/GUID/manifest.json.
            manifests = sorted({*range_dir.glob("*/manifest.json"),
                                *range_dir.glob("*/*/manifest.json")})  # fmt: skip
            for manifest in manifests:
                run_dir = manifest.parent
                rel = run_dir.relative_to(root).as_posix()
                try:
                    run = runs.parse_run(manifest.read_bytes(), rel)
                    runs.check_complete(run, lambda inner, d=run_dir: _local_size(d / inner))
                except (OSError, ValueError) as e:
                    skipped.append(f"{rel}: {e}")
                    continue
                complete.append((run, manifest))
        if not complete:
            why = "; ".join(skipped) if skipped else "no run with a manifest.json"
            raise self.error(f"no complete export run for {period}: {why}")
        run = runs.newest(r for r, _ in complete)
        manifest = next(m for r, m in complete if r is run)
        paths = [manifest.parent / inner for inner, _ in run.blobs]
        native = tuple(NativeFile(p, p.relative_to(root).as_posix()) for p in [*paths, manifest])
        metadata = {
            "run": run.rel,
            "submittedTime": run.submitted.isoformat(),
            "manifest": manifest.relative_to(root).as_posix(),
            "dataRowCount": str(run.doc.get("dataRowCount", "")),
            "runsComplete": str(len(complete)),
        }
        if skipped:
            metadata["skippedIncompleteRuns"] = "; ".join(skipped)
        return Delivery(files=native, version=run.run_id or run.rel, metadata=metadata)

    # -- normalize ----------------------------------------------------------------------------

    def _header(self, con: duckdb.DuckDBPyConnection, relpath: str, source: str) -> list[str]:
        try:
            cols = [r[0] for r in con.execute(f"DESCRIBE {source}").fetchall()]
        except duckdb.Error as e:
            raise self.error(f"cannot read file: {e}", file=relpath) from None
        return [c for c in cols if c != "__row"]

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        # The money columns are checked by the SELECT's own strict casts, and row by row only
        # if it fails (``diagnose``): a second parse of every figure was 10 s at 9.3M rows.
        files = self._checked_files(ctx, casts=False)
        return "\nUNION ALL\n".join(
            helpers.select_sql(
                fmap,
                source,
                partner_id=ctx.partner_id,
                snapshot_id=ctx.snapshot_id,
                period=ctx.period,
            )
            for fmap, source in files
        )

    def diagnose(self, ctx: NormalizeContext) -> None:
        self._checked_files(ctx, casts=True)

    def _checked_files(
        self, ctx: NormalizeContext, *, casts: bool
    ) -> list[tuple[helpers.FileMap, str]]:
        """Each cost details file's column map and rows, after its value checks (``casts``:
        also those the canonical SELECT makes by itself, ``helpers.checks``)."""
        files: list[tuple[helpers.FileMap, str]] = []
        con = connect()
        try:
            for relpath in ctx.files:
                if PurePosixPath(relpath).name == "manifest.json":
                    continue  # kept in the snapshot for audit; carries no rows
                fmt = _file_format(relpath)
                if fmt is None:
                    raise self.error("unsupported file type (expected .csv, .csv.gz or "
                                     ".parquet)", file=relpath)  # fmt: skip
                source = self._rows(ctx, relpath, fmt)
                header = self._header(con, relpath, source)
                layout = helpers.detect_layout(header)
                if layout is None:
                    raise self.error(
                        "not an Azure cost details file: " + helpers.unknown_layout_hint(header),
                        file=relpath,
                    )
                fmap, missing = helpers.map_columns(relpath, header, layout)
                if missing:
                    raise self.error(
                        f"{helpers.LAYOUT_NAMES[layout]} file lacks required column(s) "
                        f"{', '.join(missing)}",
                        file=relpath,
                        column=", ".join(missing),
                    )
                files.append((fmap, source))
            # Files at once: a file's first-bad-row pass runs on one thread.
            each_on_cursors(con, lambda cur, f: self._validate(cur, *f, casts=casts), files)
        finally:
            con.close()
        if not files:
            raise self.error("delivery holds no cost details file")
        return files

    def decode_sql(self, ctx: NormalizeContext, relpath: str) -> str | None:
        """CSV files, parsed once per run (``ctx.read``): a CSV is read on one thread to keep
        its row numbers, so each pass over it is slow."""
        fmt = _file_format(relpath)
        return helpers.source_sql(str(ctx.file(relpath)), fmt) if fmt == "csv" else None

    def _rows(self, ctx: NormalizeContext, relpath: str, fmt: str) -> str:
        return ctx.read(relpath, helpers.source_sql(str(ctx.file(relpath)), fmt))

    def row_accounting_sql(self, ctx: NormalizeContext) -> str:
        """Every data row of the run's files; a row of another billing period is rejected
        with that reason (normalize_sql has already refused files it cannot map)."""
        parts = []
        con = duckdb.connect()
        try:
            for relpath in ctx.files:
                fmt = _file_format(relpath)
                if fmt is None:
                    continue
                source = self._rows(ctx, relpath, fmt)
                header = self._header(con, relpath, source)
                fmap, _ = helpers.map_columns(
                    relpath, header, helpers.detect_layout(header) or "mca"
                )
                keep = [(helpers.in_period_sql(fmap, ctx.period), "other billing period")]
                parts.append(self.accounting_part(relpath, f"({source})", "__row", keep))
        finally:
            con.close()
        return "\nUNION ALL\n".join(parts)

    def _validate(
        self, con: duckdb.DuckDBPyConnection, fmap: helpers.FileMap, source: str, *, casts: bool
    ) -> None:
        """Find the first bad row, so the core gets a SourceError, not a cast error."""
        try:
            bad = con.execute(helpers.validation_sql(fmap, source, casts=casts)).fetchone()
        except duckdb.Error as e:
            raise self.error(f"cannot read file: {e}", file=fmap.relpath) from None
        if bad:
            row, (column, value, why) = bad
            raise self.error(f"{why}: {value!r}", file=fmap.relpath, row=row, column=column)

    # -- validation ---------------------------------------------------------------------------

    def native_relations(self, ctx: NormalizeContext) -> list[NativeRelation]:
        """Each cost details file as Azure wrote it, for the suite of its header variant (MCA,
        EA, older EA; unknown headers get the MCA suite, whose required-columns check names
        what is missing), with the row count the run's manifest promises for it."""
        manifests = [f for f in ctx.files if PurePosixPath(f).name == "manifest.json"]
        promised: dict[str, int] = {}
        for rel in manifests:
            try:
                doc = json.loads(ctx.file(rel).read_text())
                run_dir = str(PurePosixPath(rel).parent)
                for b in doc.get("blobs", []):
                    inner = runs._inner(str(b["blobName"]), run_dir)
                    promised[f"{run_dir}/{inner}"] = int(b["dataRowCount"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # an unreadable manifest stopped locate already; no tie-out here
        out = []
        con = duckdb.connect()
        try:
            for rel in ctx.files:
                fmt = _file_format(rel)
                if fmt is None:
                    continue
                source = self._rows(ctx, rel, fmt)
                try:
                    layout = helpers.detect_layout(self._header(con, rel, source))
                except SourceError:
                    layout = None  # unreadable: the suite's readable check says so
                suite = f"azure_cost_{layout or 'mca'}"
                sql = f"SELECT * EXCLUDE (__row) FROM ({source})"
                params: dict[str, object] = {"manifest_rows": promised.get(rel, -1)}
                columnar = fmt == "parquet" or rel in ctx.decoded
                out.append(NativeRelation(suite, rel, sql, params, columnar=columnar))
        finally:
            con.close()
        return out
