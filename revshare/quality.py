"""Data-quality results, independent of the tool that produced them.

The validator (Great Expectations, behind ``expectations.adapter``) is an implementation detail;
the core, the flows and the quarantine only see these plain frozen dataclasses. Keeping GX out of
this module means the core imports in milliseconds and its tests never need GX installed.

A check has three outcomes, not two: it passed, the data failed it, or it *errored* (the
validator could not evaluate it: bad SQL, a missing column, a driver fault). An errored check
must never read as "data is fine" nor as "data is bad" — it is a broken pipeline, and the
report says so separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CheckResult:
    """One expectation evaluated against one batch."""

    expectation: str
    column: str | None
    success: bool
    errored: bool
    unexpected_count: int | None
    unexpected_sample: list[str]
    message: str

    @property
    def label(self) -> str:
        """Short name for messages: ``expect_x(column)``."""
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass(frozen=True)
class ValidationReport:
    """All checks of one suite over one source (a Parquet file of canonical rows)."""

    suite: str
    source: str
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def errored(self) -> bool:
        return any(c.errored for c in self.checks)

    @property
    def success(self) -> bool:
        # An empty suite proves nothing; treat it as a failure so a lost suite file is noticed.
        return bool(self.checks) and all(c.success and not c.errored for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """Checks the data failed or that errored, in suite order."""
        return tuple(c for c in self.checks if c.errored or not c.success)

    def reason(self) -> str:
        """One sentence for the quarantine record, naming every failing check and column."""
        if self.success:
            return f"{self.source}: all {len(self.checks)} checks of suite {self.suite} passed."
        if not self.checks:
            return f"{self.source}: suite {self.suite} ran no checks."
        parts = []
        for c in self.failures:
            if c.errored:
                parts.append(f"{c.label} errored ({c.message})")
                continue
            detail = f"{c.unexpected_count} unexpected" if c.unexpected_count else "failed"
            if c.unexpected_sample:
                detail += ", e.g. " + ", ".join(c.unexpected_sample[:3])
            parts.append(f"{c.label} {detail}")
        n = len(self.failures)
        return (
            f"{self.source}: {n} of {len(self.checks)} checks of suite {self.suite} "
            f"did not pass over {self.rows} rows: " + "; ".join(parts) + "."
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (for the quarantine record and run artifacts)."""
        return {
            "suite": self.suite,
            "source": self.source,
            "rows": self.rows,
            "success": self.success,
            "errored": self.errored,
            "reason": self.reason(),
            "checks": [asdict(c) for c in self.checks],
        }
