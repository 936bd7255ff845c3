"""Connector registry: an explicit, typed mapping from a source ``type`` to its connector.

The connectors shipped here are listed by hand in ``BUILTIN`` (no import magic: reading this
file tells you what runs). Connectors living in other installed distributions join through the
entry-point group ``revshare.connectors``; each entry point is named after the source type it
serves and points at a ``Connector`` subclass::

    [project.entry-points."revshare.connectors"]
    acme_usage = "acme_revshare.connector:AcmeUsageConnector"

A broken plug-in must not sink the night for the other partners (DESIGN: one bad source does
not sink the night), so problems are collected, not raised, when the registry is built: an
entry point that does not import, does not name a valid Connector, or claims a type another
connector already serves, makes only *its* type unusable. ``build_connector`` raises a
SourceError naming the problem for sources of that type (the flow quarantines them), and
``revshare connectors list`` prints every problem. ``Registry.check()`` raises them all at
once, for CI and tests. Flows look connectors up by type and branch on their capabilities.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel, ValidationError

from connectors.aws_cur2 import AwsCur2Connector
from connectors.azure_cost import AzureCostConnector
from connectors.base import Capabilities, Connector, ConnectorSettings, SourceError
from connectors.databricks import DatabricksConnector
from connectors.focus import FocusConnector
from connectors.gcp_billing import GcpBillingConnector
from connectors.oci import OciConnector
from connectors.snowflake_usage import SnowflakeUsageConnector
from connectors.statement_files import StatementFilesConnector
from connectors.usage_log import UsageLogConnector
from revshare.config import SourceConfig

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "ConnectorRegistryError",
    "Registry",
    "build_connector",
    "load_registry",
    "registry",
]

#: The entry-point group other distributions use to add connectors.
ENTRY_POINT_GROUP: Final = "revshare.connectors"

#: The connectors shipped in this repository, by source type.
BUILTIN: Final[Mapping[str, type[Connector]]] = MappingProxyType(
    {
        c.type: c
        for c in (
            AwsCur2Connector,
            GcpBillingConnector,
            AzureCostConnector,
            SnowflakeUsageConnector,
            FocusConnector,
            StatementFilesConnector,
            OciConnector,
            DatabricksConnector,
            UsageLogConnector,
        )
    }
)


class ConnectorRegistryError(Exception):
    """The registry holds problems (bad entry points, duplicate types); raised by ``check``."""


@dataclass(frozen=True)
class Registration:
    """One usable connector and where it came from ("built-in" or the distribution's name)."""

    cls: type[Connector]
    origin: str


@dataclass(frozen=True)
class Registry:
    """Usable connectors by type, and the problems that made other types unusable."""

    connectors: Mapping[str, Registration]
    #: type (or entry point name) -> why it cannot be used
    problems: Mapping[str, str] = field(default_factory=dict)

    def get(self, source_type: str) -> type[Connector] | None:
        reg = self.connectors.get(source_type)
        return reg.cls if reg else None

    def types(self) -> list[str]:
        return sorted(self.connectors)

    def check(self) -> None:
        """Raise every problem at once (CI, tests, ``connectors list --strict``)."""
        if self.problems:
            lines = [f"- {name}: {why}" for name, why in sorted(self.problems.items())]
            raise ConnectorRegistryError("connector registry has problems:\n" + "\n".join(lines))


def contract_problem(cls: object, expected_type: str | None = None) -> str | None:
    """Why ``cls`` cannot serve as a connector, or None. Checked for plug-ins at load time, so
    a wrong entry point is reported where it is declared, not deep inside a night's run."""
    if not (inspect.isclass(cls) and issubclass(cls, Connector)):
        return f"{cls!r} is not a subclass of connectors.base.Connector"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        return f"{cls.__qualname__} is abstract (does not implement {missing})"
    ctype = getattr(cls, "type", None)
    if not isinstance(ctype, str) or not ctype:
        return f"{cls.__qualname__}.type must be a non-empty string"
    if expected_type is not None and ctype != expected_type:
        return (
            f"entry point {expected_type!r} names {cls.__qualname__}, whose type is {ctype!r}; "
            "name the entry point after the connector's type"
        )
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        return f"{cls.__qualname__}.capabilities must be a connectors.base.Capabilities"
    model = getattr(cls, "settings_model", None)
    if not (inspect.isclass(model) and issubclass(model, ConnectorSettings)):
        return f"{cls.__qualname__}.settings_model must subclass connectors.base.ConnectorSettings"
    return None


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def load_registry(
    builtin: Mapping[str, type[Connector]] = BUILTIN,
    eps: Iterable[EntryPoint] | None = None,
) -> Registry:
    """Build the registry: built-ins first, then the entry points of installed distributions.

    A type claimed twice (a plug-in reusing a built-in type, or two plug-ins one type) is not
    resolved by load order: the plug-in claims are refused and the type's problem says who
    collided, so the same installation always runs the same code.
    """
    found: dict[str, Registration] = {t: Registration(c, "built-in") for t, c in builtin.items()}
    problems: dict[str, str] = {}
    claims: dict[str, list[tuple[EntryPoint, type[Connector]]]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps:
        try:
            obj = ep.load()
        except Exception as exc:  # any import error of foreign code is that plug-in's problem
            problems[ep.name] = (
                f"entry point {ep.name} = {ep.value!r} ({_origin(ep)}) does not load: "
                f"{type(exc).__name__}: {exc}"
            )
            continue
        why = contract_problem(obj, ep.name)
        if why:
            problems[ep.name] = f"entry point {ep.name} = {ep.value!r} ({_origin(ep)}): {why}"
            continue
        claims.setdefault(ep.name, []).append((ep, obj))
    for ctype, regs in claims.items():
        distinct = {cls for _, cls in regs}
        if ctype in found and distinct == {found[ctype].cls}:
            continue  # a distribution re-declaring a built-in (e.g. this project's own metadata)
        if ctype in found or len(distinct) > 1:
            who = [found[ctype].origin] if ctype in found else []
            who += [f"{ep.value} ({_origin(ep)})" for ep, _ in regs]
            problems[ctype] = f"duplicate connector type {ctype!r}: claimed by {', '.join(who)}"
            found.pop(ctype, None)
            continue
        ep, cls = regs[0]
        found[ctype] = Registration(cls, _origin(ep))
    return Registry(MappingProxyType(found), MappingProxyType(problems))


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (entry points are scanned once; ``registry.cache_clear()``
    after installing a plug-in in the same process)."""
    return load_registry()


def build_connector(source: SourceConfig, data_dir: Path, source_name: str) -> Connector:
    """Validate a source's settings with its connector's model and build the connector."""
    reg = registry()
    cls = reg.get(source.type)
    if cls is None:
        if source.type in reg.problems:
            raise SourceError(source_name, reg.problems[source.type])
        known = ", ".join(reg.types())
        raise SourceError(source_name, f"unknown source type {source.type!r}; known: {known}")
    try:
        settings = cls.settings_model(type=source.type, **source.connector_settings())
    except ValidationError as exc:
        raise SourceError(
            source_name,
            f"bad settings: {exc.errors()[0]['msg']} "
            f"({'.'.join(map(str, exc.errors()[0]['loc']))})",
        ) from None
    return cls(settings, data_dir, source_name)


def settings_fields(cls: type[Connector]) -> list[str]:
    """The settings a connector takes (for ``connectors list``), required ones first."""
    model: type[BaseModel] = cls.settings_model
    fields = [(n, f.is_required()) for n, f in model.model_fields.items() if n != "type"]
    return [n + ("" if req else "?") for n, req in sorted(fields, key=lambda x: not x[1])]
