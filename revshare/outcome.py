"""What happened to each source and partner in a run; the report and the ledger read these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from revshare.quality import ValidationReport


@dataclass
class SourceOutcome:
    partner: str
    kind: str  # billing | statement
    source_type: str
    snapshot_id: str | None = None
    rows: int | None = None
    status: str = "ok"  # ok | quarantined
    reason: str | None = None
    validation: ValidationReport | None = None

    def ledger_row(self) -> dict:
        d = asdict(self)
        d.pop("validation")
        return d


@dataclass
class PartnerOutcome:
    partner: str
    name: str
    sources: list[SourceOutcome] = field(default_factory=list)
    status: str = "reconciled"  # reconciled | quarantined
    reason: str | None = None

    def quarantine(self, reason: str) -> None:
        self.status, self.reason = "quarantined", reason
