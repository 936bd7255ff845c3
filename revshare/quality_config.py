"""Data-quality policy as data: how severe each check is, and what a failure does to a source.

Suites say *what* is checked (``expectations/*.json``); this says *how much it matters*, so
finance can turn a check from block to warn (or back) in review without touching a suite.
``config/quality.yaml`` is optional: without it every check keeps the severity its suite
gives it and every source is quarantined on a blocking failure or an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from revshare.quality import Severity
from revshare.strict import Strict

#: What a blocking failure (or an error) does: quarantine the source (its partner is not
#: reconciled), or only report it and go on — for a source whose data is trusted by contract.
Action = Literal["quarantine", "report"]


class QuarantinePolicy(Strict):
    on_block: Action = "quarantine"
    on_error: Action = "quarantine"


class QualityConfig(Strict):
    #: Severity overrides keyed ``<suite>.<check>`` (one suite) or ``<check>`` (every suite).
    severity: dict[str, Severity] = Field(default_factory=dict)
    #: Policy for sources not listed in ``sources``.
    default_policy: QuarantinePolicy = QuarantinePolicy()
    #: Policy per source, keyed ``<partner>/<billing|statement>``.
    sources: dict[str, QuarantinePolicy] = Field(default_factory=dict)

    def policy(self, source: str) -> QuarantinePolicy:
        return self.sources.get(source, self.default_policy)


def load_quality_config(config_dir: Path) -> QualityConfig:
    """Read ``<config_dir>/quality.yaml``; a missing file means the defaults."""
    path = Path(config_dir) / "quality.yaml"
    if not path.is_file():
        return QualityConfig()
    doc = yaml.safe_load(path.read_text()) or {}
    return QualityConfig.model_validate(doc)
