"""Run identity and the layout of a run folder.

A run is built in a hidden staging folder beside its final place (``runs/.<run id>.partial``)
and renamed into ``runs/<run id>`` in one step once its report and results are complete, so a
reader (finance, the remote upload, retention) never sees half a run: a folder named like a
run id is a finished run; a ``.partial`` folder is a run in progress or one that was killed.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from revshare.periods import Period

#: A run folder's name: the period, the UTC start time and a random suffix.
RUN_ID = re.compile(r"^\d{4}-\d{2}_\d{8}T\d{6}Z_[0-9a-f]{6}$")
PARTIAL_SUFFIX = ".partial"


def new_run_id(period: Period, now: datetime | None = None) -> str:
    """Sortable and unique: period, UTC start time, and a random suffix for same-second runs."""
    now = now or datetime.now(UTC)
    return f"{period}_{now:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


def staging_dir(final: Path) -> Path:
    """Where the run in ``final`` is built until it is complete."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def partial_run_id(path: Path) -> str | None:
    """The run id of a staging folder (``.<run id>.partial``), else None."""
    name = path.name
    if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)):
        return None
    rid = name[1 : -len(PARTIAL_SUFFIX)]
    return rid if RUN_ID.match(rid) else None


@dataclass(frozen=True)
class RunPaths:
    """The files of one run. ``final`` is where the finished run is visible; with ``staged``
    the files are written under ``staging_dir(final)`` until ``commit`` renames it, and
    ``root`` follows (staging before the commit, ``final`` after), so writers need not know
    which phase they are in."""

    final: Path
    staged: bool = False

    @property
    def root(self) -> Path:
        if not self.staged or self.final.exists():
            return self.final
        return staging_dir(self.final)

    @property
    def committed(self) -> bool:
        return self.final.exists()

    def commit(self) -> Path:
        """Make the run visible: one rename of the complete staging folder (same file system,
        so atomic). Idempotent: a run already in place is left as it is."""
        if self.staged and not self.final.exists():
            os.replace(staging_dir(self.final), self.final)
        return self.final

    @property
    def work(self) -> Path:
        return self.root / "work"

    def canonical(self, partner: str, kind: str) -> Path:
        return self.work / f"{partner}.{kind}.parquet"

    def partner_results(self, partner: str) -> Path:
        """Where a partner's reconcile writes the line files of its result (revshare.lines)."""
        return self.work / f"{partner}.results"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def data_docs(self) -> Path:
        return self.root / "data_docs"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def final_report(self) -> Path:
        """Where the report is once the run is complete (what the ledger records)."""
        return self.final / "report.html"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"
