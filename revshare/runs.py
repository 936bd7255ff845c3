"""Run identity and the layout of a run folder."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from revshare.periods import Period


def new_run_id(period: Period, now: datetime | None = None) -> str:
    """Sortable and unique: period, UTC start time, and a random suffix for same-second runs."""
    now = now or datetime.now(UTC)
    return f"{period}_{now:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    def canonical(self, partner: str, kind: str) -> Path:
        return self.work / f"{partner}.{kind}.parquet"

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
    def manifest(self) -> Path:
        return self.root / "run.json"
