"""Dependency audit of the locked dependencies (``make audit``), honest about what it checked.

Runs ``pip-audit -r requirements.lock --no-deps --disable-pip -f json`` and decides:

- any known vulnerability in a locked package: fail (exit 1), naming package, version, advisory
  and the fixed versions;
- packages pip-audit could not look up (its JSON gives them a ``skip_reason``; it still prints
  "No known vulnerabilities found" and exits 0): one loud line, "dependency audit NOT
  performed: vulnerability service unreachable for N of M packages", and exit 0 — unless
  ``REVSHARE_AUDIT_REQUIRED=1``, where an audit that did not happen fails the build;
- otherwise: how many packages were audited, none vulnerable.

The decision (``decide``) is a pure function of pip-audit's JSON, tested with canned reports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


@dataclass(frozen=True)
class Decision:
    code: int
    lines: list[str]


def decide(report: dict | None, *, total: int, required: bool) -> Decision:
    """What the build does with pip-audit's JSON (None: pip-audit gave no usable report)."""
    if report is None:
        return _not_performed(total, total, required, "pip-audit produced no report")
    deps = report.get("dependencies") or []
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason") and not d.get("vulns")]
    m = max(total, len(deps))
    if vulnerable:
        lines = [f"dependency audit FAILED: {len(vulnerable)} locked package(s) with known "
                 "vulnerabilities"]  # fmt: skip
        for d in vulnerable:
            for v in d["vulns"]:
                fixes = ", ".join(v.get("fix_versions") or []) or "no fixed version"
                lines.append(f"  {d['name']} {d.get('version', '?')}: {v.get('id')} (fix: {fixes})")
        if skipped:
            lines.append(f"  and {len(skipped)} of {m} package(s) could not be audited")
        return Decision(1, lines)
    if skipped:
        return _not_performed(len(skipped), m, required, skipped[0]["skip_reason"])
    return Decision(0, [f"dependency audit: {len(deps)} locked packages, no known vulnerabilities"])


def _not_performed(n: int, m: int, required: bool, example: str) -> Decision:
    lines = [
        f"dependency audit NOT performed: vulnerability service unreachable for {n} of {m} "
        "packages",
        f"  e.g. {example}",
    ]
    if required:
        lines.append("  REVSHARE_AUDIT_REQUIRED=1: failing the build")
    return Decision(1 if required else 0, lines)


def locked_packages(lock: Path = LOCK) -> int:
    return len(_PIN.findall(lock.read_text()))


def run_pip_audit(lock: Path = LOCK) -> dict | None:
    exe = Path(sys.executable).with_name("pip-audit")
    cmd = [str(exe), "-r", str(lock), "--no-deps", "--disable-pip", "-f", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"pip-audit did not run: {exc}", file=sys.stderr)
        return None
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"pip-audit gave no JSON (exit {proc.returncode}): {tail}", file=sys.stderr)
        return None


def main() -> int:
    required = os.environ.get("REVSHARE_AUDIT_REQUIRED") == "1"
    decision = decide(run_pip_audit(), total=locked_packages(), required=required)
    print("\n".join(decision.lines))
    return decision.code


if __name__ == "__main__":
    sys.exit(main())
