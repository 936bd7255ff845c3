"""Typed configuration: YAML files in a config folder, overridable by environment variables.

Files: ``partners.yaml`` (partners and their sources), ``catalog.yaml`` (partner SKUs to
licensed models and units), ``contracts.yaml`` (effective-dated terms) and ``fx_rates.yaml``.
Source settings stay a plain mapping here, validated by the connector that their ``type``
names: the core does not know the connectors.
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from revshare.periods import Period
from revshare.schema import CHARGE_CATEGORIES, TOKEN_UNITS

_ID = r"^[a-z][a-z0-9_.-]*$"
_CURRENCY = r"^[A-Z]{3}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(BaseSettings):
    """Where things live. Every field can be set by an env var ``REVSHARE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="REVSHARE_", extra="ignore")

    config_dir: Path = Path("config")
    #: Root of the local data folders that sources' relative ``path`` settings point into.
    data_dir: Path = Path("var/demo/data")
    #: Landing zone, run folders and the DuckDB warehouse live here.
    home: Path = Path("var")

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"


class SourceConfig(BaseModel):
    """One source; ``type`` selects the connector, the rest is that connector's settings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    def connector_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PartnerConfig(_Strict):
    id: str = Field(pattern=_ID)
    name: str
    billing: SourceConfig | None = None
    statement: SourceConfig


class ModelRule(_Strict):
    model: str = Field(pattern=_ID)
    match: str = Field(description="Regular expression searched in x_SkuKey.")

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


class UnitRule(_Strict):
    unit: str
    match: str
    tokens_per_unit: int | None = Field(
        None, description="Overrides the partner's tokens_per_unit for this unit."
    )

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        if v not in TOKEN_UNITS:
            raise ValueError(f"unit must be one of {TOKEN_UNITS}, got {v!r}")
        return v

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


class PartnerCatalog(_Strict):
    """How one partner names the licensed models. Rules are tried in order; first match wins."""

    scope: str = Field(
        description="Regex on x_SkuKey selecting the licensor's lines (e.g. '(?i)llama'). "
        "A line in scope that no model rule maps is an unmapped SKU."
    )
    tokens_per_unit: int = Field(1, ge=1, description="Tokens in one native quantity unit.")
    models: list[ModelRule]
    units: list[UnitRule]


class LicensedModel(_Strict):
    id: str = Field(pattern=_ID)
    name: str


class Catalog(_Strict):
    models: list[LicensedModel]
    partners: dict[str, PartnerCatalog]

    @model_validator(mode="after")
    def _rules_name_known_models(self) -> Catalog:
        known = {m.id for m in self.models}
        for pid, pc in self.partners.items():
            for rule in pc.models:
                if rule.model not in known:
                    raise ValueError(f"catalog for {pid}: unknown model {rule.model!r}")
        return self


class Tolerance(_Strict):
    """A difference is within tolerance if |diff| <= max(absolute, relative * |expected|)."""

    absolute: Decimal = Field(Decimal("0.01"), ge=0)
    relative: Decimal = Field(Decimal("0"), ge=0)


class Tier(_Strict):
    """From this much monthly revenue (in the contract currency) on, this rate applies."""

    from_revenue: Decimal = Field(ge=0)
    rate: Decimal = Field(ge=0, le=1)


class Tiers(_Strict):
    """Rates by monthly revenue. ``marginal``: each slice of revenue at its own band's rate
    (like income tax). ``whole_volume``: the band the month's total reaches sets the rate for
    all of it."""

    mode: Literal["marginal", "whole_volume"]
    bands: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered_from_zero(self) -> Tiers:
        starts = [b.from_revenue for b in self.bands]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("tier bands must start at 0 and strictly increase")
        return self


class Contract(_Strict):
    partner: str
    effective_from: date
    effective_to: date | None = Field(None, description="Exclusive; null means open-ended.")
    share_rate: Decimal | None = Field(None, gt=0, le=1)
    model_rates: dict[str, Decimal] = Field(default_factory=dict)
    tiers: Tiers | None = None
    minimum_guarantee: Decimal | None = Field(
        None, ge=0, description="Minimum share owed for the month, in the contract currency."
    )
    currency: str = Field(pattern=_CURRENCY, description="Reporting currency of statements.")
    fx_policy: Literal["month_end", "daily"] = Field(
        "month_end",
        description="Which rate converts billing in other currencies: the period's month-end "
        "rate, or the rate of each line's usage day. Statements always use month-end.",
    )
    tolerance: Tolerance = Tolerance()
    charge_categories: list[str] = Field(default_factory=lambda: ["Usage"])

    @field_validator("charge_categories")
    @classmethod
    def _known_categories(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CHARGE_CATEGORIES]
        if bad:
            raise ValueError(f"unknown charge categories {bad}; use {CHARGE_CATEGORIES}")
        return v

    @model_validator(mode="after")
    def _one_rate_rule(self) -> Contract:
        if (self.share_rate is None) == (self.tiers is None):
            raise ValueError(f"contract for {self.partner}: give share_rate or tiers, not both")
        if self.tiers is not None and self.model_rates:
            raise ValueError(f"contract for {self.partner}: model_rates need a flat share_rate")
        return self

    def covers(self, period: Period) -> bool:
        start = period.first_day
        return self.effective_from <= start and (
            self.effective_to is None or start < self.effective_to
        )


class FxRates(_Strict):
    """One unit of each currency in ``base``: month-end rates per period, and daily rates."""

    base: str = Field("USD", pattern=_CURRENCY)
    month_end: dict[str, dict[str, Decimal]] = Field(default_factory=dict)
    daily: dict[date, dict[str, Decimal]] = Field(default_factory=dict)

    @staticmethod
    def _convert(table: dict[str, Decimal], base: str, a: str, b: str, when: str) -> Decimal:
        if a == b:
            return Decimal(1)
        table = {**table, base: Decimal(1)}
        missing = [c for c in (a, b) if c not in table]
        if missing:
            raise LookupError(f"no FX rate for {', '.join(missing)} on {when}")
        return table[a] / table[b]

    def rate(self, period: Period, from_ccy: str, to_ccy: str) -> Decimal:
        """The period's month-end rate."""
        return self._convert(
            self.month_end.get(str(period), {}), self.base, from_ccy, to_ccy, f"month end {period}"
        )

    def rate_on(self, day: date, from_ccy: str, to_ccy: str) -> Decimal:
        """The rate of one day (daily policy)."""
        return self._convert(self.daily.get(day, {}), self.base, from_ccy, to_ccy, str(day))


class MatchRule(_Strict):
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


class MatchRules(_Strict):
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


class Matching(_Strict):
    """Matching rules as data: a default, and per-partner overrides."""

    default: MatchRules = MatchRules(rules=_DEFAULT_RULES)
    partners: dict[str, MatchRules] = Field(default_factory=dict)

    def for_partner(self, partner: str) -> MatchRules:
        return self.partners.get(partner, self.default)


class Config(_Strict):
    partners: dict[str, PartnerConfig]
    catalog: Catalog
    contracts: list[Contract]
    fx: FxRates = FxRates()
    matching: Matching = Matching()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        for pid in self.partners:
            if not any(c.partner == pid for c in self.contracts):
                raise ValueError(f"partner {pid!r} has no contract")
            if self.partners[pid].billing and pid not in self.catalog.partners:
                raise ValueError(f"partner {pid!r} has a billing source but no catalog entry")
        return self

    @model_validator(mode="after")
    def _model_rates_name_models(self) -> Config:
        known = {m.id for m in self.catalog.models}
        for c in self.contracts:
            unknown = sorted(set(c.model_rates) - known)
            if unknown:
                raise ValueError(f"contract for {c.partner}: unknown model(s) {unknown}")
        return self

    def contract_for(self, partner: str, period: Period) -> Contract:
        hits = [c for c in self.contracts if c.partner == partner and c.covers(period)]
        if len(hits) != 1:
            raise LookupError(f"{len(hits)} contracts cover {partner} in {period}; need exactly 1")
        return hits[0]

    @cached_property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.catalog.models]


_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _expand_env(node: Any) -> Any:
    """Expand ${VAR} in string values, so secrets and endpoints stay out of the files."""
    if isinstance(node, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), node)
    if isinstance(node, list):
        return [_expand_env(v) for v in node]
    if isinstance(node, dict):
        return {k: _expand_env(v) for k, v in node.items()}
    return node


def _read_yaml(path: Path) -> Any:
    try:
        return _expand_env(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file missing: {path}") from None


def load_config(config_dir: Path) -> Config:
    partners = _read_yaml(config_dir / "partners.yaml")["partners"]
    fx_path = config_dir / "fx_rates.yaml"
    matching_path = config_dir / "matching.yaml"
    return Config(
        matching=_read_yaml(matching_path) if matching_path.exists() else {},
        partners={pid: {"id": pid, **p} for pid, p in partners.items()},
        catalog=_read_yaml(config_dir / "catalog.yaml"),
        contracts=_read_yaml(config_dir / "contracts.yaml")["contracts"],
        fx=_read_yaml(fx_path) if fx_path.exists() else {},
    )
