"""What happened to each source and partner in a run; the report and the ledger read these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from revshare.quality import ValidationReport


@dataclass(frozen=True)
class RowAccounting:
    """Where every native row of a source went: rows read = rows normalized + rows rejected.

    ``read`` counts the line-bearing rows of the snapshot's native files (all periods);
    ``normalized`` the distinct native rows (file, row) behind the canonical lines (a row may
    yield several lines, e.g. a Google record and its credits); ``rejected`` the rows the
    connector leaves out on purpose, by reason (another period, another provider...). All three
    are counted in DuckDB; the core refuses a source whose counts do not add up.
    """

    read: int
    normalized: int
    rejected: int
    reasons: tuple[tuple[str, int], ...] = ()

    @property
    def balanced(self) -> bool:
        return self.read == self.normalized + self.rejected

    def summary(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in self.reasons)
        return f"{self.read} read = {self.normalized} normalized + {self.rejected} rejected" + (
            f" ({why})" if why else ""
        )


@dataclass
class SourceOutcome:
    partner: str
    kind: str  # billing | statement
    source_type: str
    snapshot_id: str | None = None
    rows: int | None = None
    rows_read: int | None = None
    rows_normalized: int | None = None
    rows_rejected: int | None = None
    rejected: list[dict] | None = None  # [{"reason": ..., "rows": n}]
    status: str = "ok"  # ok | quarantined
    reason: str | None = None
    validation: ValidationReport | None = None

    def count(self, acc: RowAccounting | None) -> None:
        """Record the source's row accounting (None: its connector does not count rows)."""
        if acc is not None:
            self.rows_read, self.rows_normalized = acc.read, acc.normalized
            self.rows_rejected = acc.rejected
            self.rejected = [{"reason": r, "rows": n} for r, n in acc.reasons]

    @property
    def accounting(self) -> str | None:
        """One line for the report: "N read = M normalized + K rejected (reasons)"."""
        if self.rows_read is None:
            return None
        reasons = tuple((d["reason"], d["rows"]) for d in self.rejected or [])
        return RowAccounting(
            self.rows_read, self.rows_normalized or 0, self.rows_rejected or 0, reasons
        ).summary()

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
