"""Data-quality results, independent of the tool that produced them.

The validator (Great Expectations, behind ``expectations.adapter``) is an implementation detail;
the core, the flows and the quarantine only see these plain frozen dataclasses. Keeping GX out of
this module means the core imports in milliseconds and its tests never need GX installed.

A check has three outcomes, not two: it passed, the data failed it, or it *errored* (the
validator could not evaluate it: bad SQL, a missing column, a driver fault). An errored check
must never read as "data is fine" nor as "data is bad" — it is a broken pipeline, and the
report says so separately.

Each check also carries a *severity*: ``block`` (a failure stops the source, under its
quarantine policy) or ``warn`` (reported, never quarantines: late rows, unknown new columns,
unmapped SKUs, statement gaps the reconciliation already prices). An errored check always
counts as blocking: what could not be checked cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

Severity = Literal["block", "warn"]
BLOCK: Severity = "block"
WARN: Severity = "warn"


@dataclass(frozen=True)
class CheckResult:
    """One expectation evaluated against one batch (one file, or one canonical table)."""

    expectation: str
    column: str | None
    success: bool
    errored: bool
    unexpected_count: int | None
    unexpected_sample: list[str]
    message: str
    #: Stable id of the check inside its suite (``meta.check``), the key config uses.
    check: str = ""
    severity: Severity = BLOCK
    suite: str = ""
    #: The native file the batch was read from (None for a canonical table).
    file: str | None = None
    #: Up to a few offending rows, as ``{column: value}`` text (query checks).
    sample_rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Short name for messages: ``expect_x(column)``."""
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    @property
    def failed(self) -> bool:
        return self.errored or not self.success

    @property
    def blocking(self) -> bool:
        """Failed and must stop the source (errors always do)."""
        return self.errored or (not self.success and self.severity == BLOCK)

    @property
    def warning(self) -> bool:
        return not self.errored and not self.success and self.severity == WARN

    def describe(self) -> str:
        """One clause for a reason: check, column, file and what was wrong."""
        name = f"{self.check or self.expectation}({self.column})" if self.column else None
        name = name or self.check or self.expectation
        where = f" in file {self.file}" if self.file else ""
        if self.errored:
            return f"{name}{where} errored ({self.message})"
        if self.unexpected_count:
            detail = f"{self.unexpected_count} unexpected"
            if self.unexpected_sample:
                detail += ", e.g. " + ", ".join(self.unexpected_sample[:3])
        elif self.message and self.unexpected_sample:  # table checks: columns, row counts
            detail = f"{self.message}: {', '.join(self.unexpected_sample)}"
        else:
            detail = "failed"
        return f"{name}{where} {detail}"


@dataclass(frozen=True)
class ValidationReport:
    """All checks of one or more suites over one source.

    A flow validates a source in steps (the native files, then the canonical table, then the
    partner-level checks); ``merge`` joins the step reports into one, so the report and the
    ledger see one object per source whatever the number of files.
    """

    suite: str
    source: str
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def errored(self) -> bool:
        return any(c.errored for c in self.checks)

    @property
    def success(self) -> bool:
        """The source may go on: no blocking failure, no error. Warnings do not count.

        An empty suite proves nothing; it is a failure so a lost suite file is noticed."""
        return bool(self.checks) and not self.blocking

    @property
    def clean(self) -> bool:
        """Every check passed, warnings included."""
        return bool(self.checks) and not self.failures

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """Checks the data failed or that errored (blocking and warnings), in suite order."""
        return tuple(c for c in self.checks if c.failed)

    @property
    def blocking(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.blocking)

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.warning)

    @property
    def rows_affected(self) -> int:
        """Rows the failing checks point at (a row failing two checks counts twice)."""
        return sum(c.unexpected_count or 0 for c in self.failures)

    def reason(self) -> str:
        """One sentence for the quarantine record, naming every blocking check, column and
        file, then the warnings."""
        if not self.checks:
            return f"{self.source}: suite {self.suite} ran no checks."
        warn = "; ".join(c.describe() for c in self.warnings)
        if self.success:
            text = f"{self.source}: all {len(self.checks)} checks of suite {self.suite} passed"
            if warn:
                text = (
                    f"{self.source}: the {len(self.checks)} checks of suite {self.suite} "
                    f"passed with {len(self.warnings)} warning(s): {warn}"
                )
            return text + "."
        n = len(self.blocking)
        shown = [c for c in self.blocking if not c.message.startswith("not run:")]
        not_run = len(self.blocking) - len(shown)
        text = (
            f"{self.source}: {n} of {len(self.checks)} checks of suite {self.suite} "
            f"did not pass over {self.rows} rows: " + "; ".join(c.describe() for c in shown)
        )
        if not_run:
            text += f" ({not_run} check(s) reading the missing column(s) not run)"
        return text + (f"; warnings: {warn}." if warn else ".")

    def summary_rows(self) -> list[dict[str, object]]:
        """One row per failing or warning check: what the report and the Prefect artifact
        tabulate (suite, file, check, column, severity, rows affected, sample)."""
        return [
            {
                "source": self.source,
                "suite": c.suite or self.suite,
                "file": c.file or "",
                "check": c.check or c.expectation,
                "column": c.column or "",
                "severity": "error" if c.errored else c.severity,
                "rows_affected": c.unexpected_count,
                "sample": "; ".join(c.unexpected_sample[:3]) or c.message,
            }
            for c in self.failures
        ]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (for the quarantine record and run artifacts)."""
        return {
            "suite": self.suite,
            "source": self.source,
            "rows": self.rows,
            "success": self.success,
            "clean": self.clean,
            "errored": self.errored,
            "blocking": len(self.blocking),
            "warnings": len(self.warnings),
            "rows_affected": self.rows_affected,
            "reason": self.reason(),
            "failures": self.summary_rows(),
            "checks": [asdict(c) for c in self.checks],
        }

    @staticmethod
    def merge(source: str, reports: Iterable[ValidationReport], rows: int) -> ValidationReport:
        """Join step reports of one source; each check keeps its suite (and file)."""
        reports = list(reports)
        suites = list(dict.fromkeys(r.suite for r in reports))
        checks = tuple(
            c if c.suite else replace(c, suite=r.suite) for r in reports for c in r.checks
        )
        return ValidationReport(suite=" + ".join(suites), source=source, rows=rows, checks=checks)

    def for_file(self, file: str, rows: int) -> ValidationReport:
        """These checks, as the report of one of the files they were run over together."""
        checks = tuple(replace(c, file=file) for c in self.checks)
        return replace(self, rows=rows, checks=checks)

    def with_severities(self, severity_of: dict[str, Severity]) -> ValidationReport:
        """Apply configured severities, keyed ``<suite>.<check>`` or ``<check>``."""
        out = []
        for c in self.checks:
            suite = c.suite or self.suite
            sev = severity_of.get(f"{suite}.{c.check}", severity_of.get(c.check, c.severity))
            out.append(replace(c, severity=sev, suite=suite))
        return replace(self, checks=tuple(out))
