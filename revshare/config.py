"""Typed configuration: YAML files in a config folder, overridable by environment variables.

Files: ``partners.yaml`` (partners and their sources), ``catalog.yaml`` (partner SKUs to
licensed models and units), ``contracts.yaml`` (effective-dated terms) and ``fx_rates.yaml``.
Source settings stay a plain mapping here, validated by the connector that their ``type``
names: the core does not know the connectors.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from revshare.checks_config import ChecksConfig
from revshare.contracts import Contract
from revshare.fx import FxRates
from revshare.matching import Matching
from revshare.periods import Period
from revshare.schema import TOKEN_UNITS
from revshare.strict import Strict

_ID = r"^[a-z][a-z0-9_.-]*$"
_CURRENCY = r"^[A-Z]{3}$"


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


class PartnerConfig(Strict):
    id: str = Field(pattern=_ID)
    name: str
    billing: SourceConfig | None = None
    statement: SourceConfig
    #: The licensor's own usage through this partner (a billing export of its own account, or
    #: a usage log): it must appear in the partner's statement. Used when there is no billing.
    probe: SourceConfig | None = None

    @property
    def statement_only(self) -> bool:
        """No billing export to hold the statement to: checked on its own terms instead."""
        return self.billing is None


class ModelRule(Strict):
    model: str = Field(pattern=_ID)
    match: str = Field(description="Regular expression searched in x_SkuKey.")

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


class UnitRule(Strict):
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


class PartnerCatalog(Strict):
    """How one partner names the licensed models. Rules are tried in order; first match wins."""

    scope: str = Field(
        description="Regex on x_SkuKey selecting the licensor's lines (e.g. '(?i)llama'). "
        "A line in scope that no model rule maps is an unmapped SKU."
    )
    tokens_per_unit: int = Field(1, ge=1, description="Tokens in one native quantity unit.")
    models: list[ModelRule]
    units: list[UnitRule]


class LicensedModel(Strict):
    id: str = Field(pattern=_ID)
    name: str


class Catalog(Strict):
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


class Config(Strict):
    partners: dict[str, PartnerConfig]
    catalog: Catalog
    contracts: list[Contract]
    fx: FxRates = FxRates()
    matching: Matching = Matching()
    checks: ChecksConfig = ChecksConfig()

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
            unknown = sorted((set(c.model_rates) | set(c.models or ())) - known)
            if unknown:
                raise ValueError(f"contract for {c.partner}: unknown model(s) {unknown}")
        return self

    def contract_for(self, partner: str, period: Period) -> Contract:
        hits = [c for c in self.contracts if c.partner == partner and c.covers(period)]
        if len(hits) != 1:
            raise LookupError(f"{len(hits)} contracts cover {partner} in {period}; need exactly 1")
        return hits[0]

    @model_validator(mode="after")
    def _names_are_identifiers(self) -> Config:
        """Every name from config that reaches SQL, a file path or a report is a plain id
        (docs/security.md): partner and model ids are checked by their fields; these are the
        names that live in free-form keys and lists."""
        names = [
            *(("catalog partner", k) for k in self.catalog.partners),
            *(("matching partner", k) for k in self.matching.partners),
            *(("contract partner", c.partner) for c in self.contracts),
            *(("contract model", m) for c in self.contracts for m in c.model_rates),
            *(("contract model", m) for c in self.contracts for m in c.models or ()),
        ]
        for what, name in names:
            if not re.match(_ID, name):
                raise ValueError(
                    f"{what} {name!r} is not a plain id (lower-case letters, digits, '_', '.', "
                    "'-'; starting with a letter)"
                )
        return self

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
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file missing: {path}") from None
    refuse_literal_secrets(raw, path.name)
    return _expand_env(raw)


#: Setting names that hold a secret. Such a setting may only name where the secret is: an
#: environment variable (``*_env``), a Prefect block (``credentials_block``), a key file's path
#: (``*_path``), or be a whole ``${VAR}`` reference; a literal value is refused.
_SECRET_KEY = re.compile(
    r"password|passphrase|secret|token|account_?key|connection_?string|sas|private_?key|"
    r"credential|api_?key",
    re.IGNORECASE,
)
_WHERE_KEY = re.compile(r"(_env|_path|_file|^credentials_block)$", re.IGNORECASE)
_WHOLE_REF = re.compile(r"^\$\{[A-Z0-9_]+\}$")
#: A URL carrying credentials: user:password@ or a token in its query.
_SECRET_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@|[?&](sig|token|key|access_token|code)=",
                         re.IGNORECASE)  # fmt: skip


def refuse_literal_secrets(node: Any, where: str) -> None:
    """Refuse a secret written into a config file (docs/security.md): credentials come from
    the environment, a secret store or a Prefect block, never from YAML that is committed,
    copied into run folders and shown in reviews. The error names the key, never the value."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}: {key}"
            secret_key = isinstance(key, str) and _SECRET_KEY.search(key)
            if (
                isinstance(value, str)
                and secret_key
                and not _WHERE_KEY.search(str(key))
                and not _WHOLE_REF.match(value.strip())
            ):
                raise ValueError(
                    f"{here} holds a literal secret; name an environment variable "
                    f"({key}_env: VAR), a Prefect credentials block, or write ${{VAR}}"
                )
            if isinstance(value, str) and _SECRET_URL.search(value):
                raise ValueError(
                    f"{here} is a URL carrying credentials; put the URL in an environment "
                    "variable and name it (e.g. url_env)"
                )
            refuse_literal_secrets(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            refuse_literal_secrets(value, f"{where}[{i}]")


def load_config(config_dir: Path) -> Config:
    partners = _read_yaml(config_dir / "partners.yaml")["partners"]
    fx_path = config_dir / "fx_rates.yaml"
    matching_path = config_dir / "matching.yaml"
    checks_path = config_dir / "checks.yaml"
    return Config(
        checks=_read_yaml(checks_path) if checks_path.exists() else {},
        matching=_read_yaml(matching_path) if matching_path.exists() else {},
        partners={pid: {"id": pid, **p} for pid, p in partners.items()},
        catalog=_read_yaml(config_dir / "catalog.yaml"),
        contracts=_read_yaml(config_dir / "contracts.yaml")["contracts"],
        fx=_read_yaml(fx_path) if fx_path.exists() else {},
    )
