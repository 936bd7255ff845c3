"""Matching rules as data (``config/matching.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from revshare.strict import Strict


class MatchRule(Strict):
    """One matching rule. ``grain``: statement lines are matched to the billing lines that
    share their keys (many billing lines to one statement line; with ``region`` in the keys,
    one statement line per region to that region's billing). ``partner_total``: the
    statement's total is held to the contract's total for the partner (minimum guarantee)."""

    rule: Literal["grain", "partner_total"]
    keys: list[Literal["model", "unit", "region"]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _grain_keys(self) -> MatchRule:
        if self.rule == "grain" and not {"model", "unit"} <= set(self.keys):
            raise ValueError("a grain rule's keys must include model and unit")
        if self.rule != "grain" and self.keys:
            raise ValueError(f"a {self.rule} rule takes no keys")
        return self


class MatchRules(Strict):
    rules: list[MatchRule]

    @model_validator(mode="after")
    def _one_grain(self) -> MatchRules:
        if [r.rule for r in self.rules].count("grain") != 1:
            raise ValueError("matching needs exactly one grain rule")
        return self

    @property
    def by_region(self) -> bool:
        return any("region" in r.keys for r in self.rules)

    @property
    def partner_total(self) -> bool:
        return any(r.rule == "partner_total" for r in self.rules)

    def describe(self) -> str:
        return "; ".join(
            r.rule + (f" by {', '.join(r.keys)}" if r.keys else "") for r in self.rules
        )


_DEFAULT_RULES = [MatchRule(rule="grain", keys=["model", "unit"]), MatchRule(rule="partner_total")]


class Matching(Strict):
    """Matching rules as data: a default, and per-partner overrides."""

    default: MatchRules = MatchRules(rules=_DEFAULT_RULES)
    partners: dict[str, MatchRules] = Field(default_factory=dict)

    def for_partner(self, partner: str) -> MatchRules:
        return self.partners.get(partner, self.default)
