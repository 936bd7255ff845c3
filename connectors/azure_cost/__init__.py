"""Azure Cost Management exports (cost details), read from a local copy of the container.

``locate`` picks the newest complete run of the export for a period: every run folder carries
a ``manifest.json`` that lists its blobs with their byte counts, and a month-to-date export
re-emits the whole month on every run, so the newest run whose blobs are all there (at the
promised size) is the delivery. ``normalize_sql`` maps MCA and EA headers by name.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import duckdb

from connectors.azure_cost import helpers
from connectors.azure_cost.settings import AzureCostSettings
from connectors.base import (
    Capabilities,
    Connector,
    ConnectorSettings,
    Delivery,
    NativeFile,
    NormalizeContext,
)
from revshare.periods import Period

__all__ = ["AzureCostConnector", "AzureCostSettings"]

_RANGE = re.compile(r"^(\d{8})-(\d{8})$")
_FRACTION = re.compile(r"\.(\d+)")


def _parse_time(text: str) -> datetime:
    """ISO time as .NET writes it (7 fractional digits, trailing Z); Python wants <= 6."""
    t = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip())
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _file_format(relpath: str) -> str | None:
    name = relpath.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


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

    # -- locate -------------------------------------------------------------------------------

    def _range_dirs(self, period: Period) -> list[Path]:
        """Date-range folders of the period: start on its first day, end inside it."""
        export_dir = self.local_root(self._settings.path) / self._settings.export_name
        if not export_dir.is_dir():
            raise self.error(f"export folder not found: {export_dir}")
        last = (period.end - timedelta(days=1)).strftime("%Y%m%d")
        first = period.start.strftime("%Y%m%d")
        out = []
        for d in sorted(export_dir.iterdir()):
            m = _RANGE.match(d.name)
            if d.is_dir() and m and m.group(1) == first and first <= m.group(2) <= last:
                out.append(d)
        return out

    def _check_run(self, root: Path, manifest: Path) -> tuple[dict[str, Any], list[Path]]:
        """Parse a run's manifest and resolve its blobs; ValueError says why it is incomplete."""
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            run = doc["runInfo"]
            submitted = _parse_time(run["submittedTime"])
            blobs = doc["blobs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"unreadable manifest ({e})") from e
        if int(doc.get("blobCount", len(blobs))) != len(blobs):
            raise ValueError(f"blobCount {doc.get('blobCount')} but {len(blobs)} blobs listed")
        run_dir = manifest.parent
        run_rel = run_dir.relative_to(root).as_posix() + "/"
        files = []
        for b in blobs:
            name = str(b["blobName"])
            # blobName is container-relative and starts with rootFolderPath; what follows the
            # run folder's own path is the blob's place inside the run.
            i = name.find(run_rel)
            inner = name[i + len(run_rel) :] if i >= 0 else PurePosixPath(name).name
            path = run_dir / inner
            if not path.is_file():
                raise ValueError(f"blob missing: {inner}")
            size = path.stat().st_size
            if size != int(b["byteCount"]):
                raise ValueError(f"blob {inner} has {size} bytes, manifest says {b['byteCount']}")
            files.append(path)
        return {"submitted": submitted, "runId": str(run.get("runId", "")), "doc": doc}, files

    def locate(self, period: Period) -> Delivery:
        root = self.local_root(self._settings.path)
        complete, skipped = [], []
        for range_dir in self._range_dirs(period):
            # Both depths occur: RUN/manifest.json and EXPORTTIME/GUID/manifest.json.
            manifests = sorted({*range_dir.glob("*/manifest.json"),
                                *range_dir.glob("*/*/manifest.json")})  # fmt: skip
            for manifest in manifests:
                rel = manifest.parent.relative_to(root).as_posix()
                try:
                    info, files = self._check_run(root, manifest)
                except ValueError as e:
                    skipped.append(f"{rel}: {e}")
                    continue
                complete.append((info["submitted"], rel, info, manifest, files))
        if not complete:
            why = "; ".join(skipped) if skipped else "no run with a manifest.json"
            raise self.error(f"no complete export run for {period}: {why}")
        submitted, rel, info, manifest, files = max(complete, key=lambda c: (c[0], c[1]))
        native = tuple(NativeFile(p, p.relative_to(root).as_posix()) for p in [*files, manifest])
        doc = info["doc"]
        metadata = {
            "run": rel,
            "submittedTime": submitted.isoformat(),
            "manifest": manifest.relative_to(root).as_posix(),
            "dataRowCount": str(doc.get("dataRowCount", "")),
            "runsComplete": str(len(complete)),
        }
        if skipped:
            metadata["skippedIncompleteRuns"] = "; ".join(skipped)
        return Delivery(files=native, version=info["runId"] or rel, metadata=metadata)

    # -- normalize ----------------------------------------------------------------------------

    def _header(self, con: duckdb.DuckDBPyConnection, relpath: str, source: str) -> list[str]:
        try:
            cols = [r[0] for r in con.execute(f"DESCRIBE {source}").fetchall()]
        except duckdb.Error as e:
            raise self.error(f"cannot read file: {e}", file=relpath) from None
        return [c for c in cols if c != "__row"]

    def normalize_sql(self, ctx: NormalizeContext) -> str:
        parts = []
        con = duckdb.connect()
        try:
            for relpath in ctx.files:
                if PurePosixPath(relpath).name == "manifest.json":
                    continue  # kept in the snapshot for audit; carries no rows
                fmt = _file_format(relpath)
                if fmt is None:
                    raise self.error("unsupported file type (expected .csv, .csv.gz or "
                                     ".parquet)", file=relpath)  # fmt: skip
                source = helpers.source_sql(str(ctx.file(relpath)), fmt)
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
                self._validate(con, fmap, source)
                parts.append(helpers.select_sql(
                    fmap, source, partner_id=ctx.partner_id, snapshot_id=ctx.snapshot_id,
                    period=ctx.period,
                ))  # fmt: skip
        finally:
            con.close()
        if not parts:
            raise self.error("delivery holds no cost details file")
        return "\nUNION ALL\n".join(parts)

    def _validate(self, con: duckdb.DuckDBPyConnection, fmap: helpers.FileMap, source: str) -> None:
        """Find the first bad row up front, so the core gets a SourceError, not a cast error."""
        try:
            bad = con.execute(helpers.validation_sql(fmap, source)).fetchone()
        except duckdb.Error as e:
            raise self.error(f"cannot read file: {e}", file=fmap.relpath) from None
        if bad:
            row, (column, value, why) = bad
            raise self.error(f"{why}: {value!r}", file=fmap.relpath, row=row, column=column)
