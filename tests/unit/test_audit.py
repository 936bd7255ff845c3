"""The dependency audit's decision (tools/audit.py) on canned pip-audit reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("revshare_audit", REPO / "tools" / "audit.py")
audit = importlib.util.module_from_spec(_spec)
sys.modules["revshare_audit"] = audit  # dataclasses look their module up there
_spec.loader.exec_module(audit)

CLEAN = {
    "dependencies": [
        {"name": "duckdb", "version": "1.5.5", "vulns": []},
        {"name": "pyarrow", "version": "26.0.1", "vulns": []},
    ],
    "fixes": [],
}
VULNERABLE = {
    "dependencies": [
        {"name": "duckdb", "version": "1.5.5", "vulns": []},
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": []}]},
    ],
    "fixes": [],
}  # fmt: skip
SKIP = "Dependency not found on PyPI and could not be audited: duckdb (1.5.5)"
UNREACHABLE = {"dependencies": [{"name": "duckdb", "skip_reason": SKIP},
                                {"name": "pyarrow", "skip_reason": SKIP}], "fixes": []}  # fmt: skip


@pytest.mark.parametrize("required", [False, True])
def test_a_known_vulnerability_fails_the_build(required: bool) -> None:
    d = audit.decide(VULNERABLE, total=2, required=required)
    assert d.code == 1
    assert "FAILED" in d.lines[0]
    assert "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fix: 3.1.3)" in d.lines[1]


@pytest.mark.parametrize("required", [False, True])
def test_clean_passes(required: bool) -> None:
    d = audit.decide(CLEAN, total=2, required=required)
    assert d == audit.Decision(0, ["dependency audit: 2 locked packages, no known vulnerabilities"])


def test_unreachable_is_said_loudly_and_passes_by_default() -> None:
    d = audit.decide(UNREACHABLE, total=2, required=False)
    assert d.code == 0
    assert d.lines[0] == (
        "dependency audit NOT performed: vulnerability service unreachable for 2 of 2 packages"
    )


def test_unreachable_fails_when_the_audit_is_required() -> None:
    d = audit.decide(UNREACHABLE, total=2, required=True)
    assert d.code == 1 and "NOT performed" in d.lines[0]


def test_partly_unreachable_counts_the_skipped_ones() -> None:
    report = {"dependencies": [*CLEAN["dependencies"], UNREACHABLE["dependencies"][0]]}
    d = audit.decide(report, total=3, required=False)
    assert "unreachable for 1 of 3 packages" in d.lines[0]


def test_no_report_at_all_is_not_an_audit() -> None:
    d = audit.decide(None, total=246, required=False)
    assert d.code == 0 and "unreachable for 246 of 246 packages" in d.lines[0]
    assert audit.decide(None, total=246, required=True).code == 1


def test_the_lock_is_counted() -> None:
    assert audit.locked_packages() > 100
