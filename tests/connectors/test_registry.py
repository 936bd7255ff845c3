"""The connector registry (built-ins + entry points) and ``revshare connectors list / new``."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

import connectors
from connectors import BUILTIN, ConnectorRegistryError, build_connector, load_registry, registry
from connectors.oci import OciConnector
from revshare.cli import app
from revshare.config import SourceConfig
from revshare.errors import SourceError

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
from typing import ClassVar, Literal
from connectors.base import Capabilities, Connector, ConnectorSettings, Delivery

class AcmeSettings(ConnectorSettings):
    type: Literal["acme_usage"]
    path: str

class AcmeConnector(Connector):
    """Acme usage files."""
    type: ClassVar[str] = "acme_usage"
    capabilities: ClassVar[Capabilities] = Capabilities(produces="billing", formats=("csv",))
    settings_model = AcmeSettings

    def locate(self, period):
        return Delivery(())

    def normalize_sql(self, ctx):
        return "SELECT 1"

NotAConnector = object()
'''


def _distribution(root: Path, entry_points: str, module: str = PLUGIN) -> Path:
    """A throwaway installed distribution: a module and its dist-info, on a sys.path entry."""
    (root / "acme_revshare.py").write_text(module)
    info = root / "acme_revshare-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-revshare\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[revshare.connectors]\n" + entry_points)
    return root


@pytest.fixture
def fresh_registry():
    registry.cache_clear()
    yield
    registry.cache_clear()
    sys.modules.pop("acme_revshare", None)


def test_builtins_are_one_typed_mapping() -> None:
    assert set(BUILTIN) == {
        "aws_cur2", "gcp_billing", "azure_cost", "snowflake_usage", "focus", "statement_files",
        "oci", "databricks", "usage_log",
    }  # fmt: skip
    assert all(cls.type == t for t, cls in BUILTIN.items())
    with pytest.raises(TypeError):
        BUILTIN["x"] = OciConnector  # type: ignore[index]
    reg = registry()
    reg.check()
    assert reg.connectors["oci"].origin == "built-in"


def test_an_installed_distributions_entry_point_is_picked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.syspath_prepend(
        str(_distribution(tmp_path, "acme_usage = acme_revshare:AcmeConnector\n"))
    )
    reg = registry()
    reg.check()
    assert reg.get("acme_usage").__name__ == "AcmeConnector"
    assert reg.connectors["acme_usage"].origin == "acme-revshare 0.1"
    conn = build_connector(SourceConfig(type="acme_usage", path="x"), tmp_path, "acme/billing")
    assert conn.settings.path == "x"
    with pytest.raises(SourceError, match="bad settings"):
        build_connector(SourceConfig(type="acme_usage"), tmp_path, "acme/billing")


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, connectors.ENTRY_POINT_GROUP)


def test_bad_entry_points_and_duplicates_are_clear_and_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.syspath_prepend(str(_distribution(tmp_path, "")))
    reg = load_registry(
        eps=[
            _ep("missing", "acme_revshare_nope:Thing"),
            _ep("not_a_class", "acme_revshare:NotAConnector"),
            _ep("wrong_name", "acme_revshare:AcmeConnector"),
            _ep("oci", "acme_revshare:AcmeConnector"),  # type mismatch first
            _ep("base", "connectors.base:Connector"),
        ]
    )
    p = reg.problems
    assert "does not load: ModuleNotFoundError" in p["missing"]
    assert "not a subclass of connectors.base.Connector" in p["not_a_class"]
    assert "whose type is 'acme_usage'" in p["wrong_name"]
    assert "is abstract" in p["base"]
    assert reg.get("oci") is OciConnector  # a bad claim never displaces the built-in
    with pytest.raises(ConnectorRegistryError, match="missing"):
        reg.check()

    class Fake(OciConnector):
        pass

    import acme_revshare

    acme_revshare.FakeOci = Fake
    dup = load_registry(
        eps=[_ep("oci", "acme_revshare:FakeOci"), _ep("oci", "connectors.oci:OciConnector")]
    )
    assert dup.get("oci") is None  # ambiguous: refused, not resolved by load order
    assert "duplicate connector type 'oci'" in dup.problems["oci"]
    assert "built-in" in dup.problems["oci"] and "FakeOci" in dup.problems["oci"]
    # Re-declaring the very same built-in class (this project's own metadata) is no clash.
    same = load_registry(eps=[_ep("oci", "connectors.oci:OciConnector")])
    assert same.get("oci") is OciConnector and not same.problems

    # Only the broken type's sources fail, with the reason; the rest still build.
    monkeypatch.setattr(connectors, "registry", lambda: dup)
    with pytest.raises(SourceError, match="duplicate connector type 'oci'"):
        build_connector(SourceConfig(type="oci", path="x"), tmp_path, "oracle/billing")
    build_connector(SourceConfig(type="focus", path="x"), tmp_path, "aws/billing")
    with pytest.raises(SourceError, match="unknown source type 'nope'; known: aws_cur2"):
        build_connector(SourceConfig(type="nope"), tmp_path, "x/billing")


def test_cli_list_shows_connectors_capabilities_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    result = CliRunner().invoke(app, ["connectors", "list"])
    assert result.exit_code == 0, result.output
    for ctype in BUILTIN:
        assert ctype in result.output
    assert "built-in" in result.output and "csv.gz" in result.output
    monkeypatch.syspath_prepend(str(_distribution(tmp_path, "broken = acme_revshare:Nope\n")))
    registry.cache_clear()
    result = CliRunner().invoke(app, ["connectors", "list", "--strict"])
    assert result.exit_code == 1
    assert "unusable" in result.output and "broken" in result.output


def test_cli_new_scaffolds_a_connector_that_passes_the_standard_suite(tmp_path: Path) -> None:
    """Scaffold into a throwaway distribution, register it by entry point, and run the
    generated tests (the standard suite) in a fresh interpreter, as a plug-in author would."""
    pkg = tmp_path / "pkg"
    result = CliRunner().invoke(
        app,
        ["connectors", "new", "acme_usage", "--dest", str(pkg / "acme_connectors"),
         "--tests", str(tmp_path / "tests"), "--package", "acme_connectors.acme_usage"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = pkg / "acme_connectors" / "acme_usage"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "__init__.py", "helpers.py", "settings.py",
    ]  # fmt: skip
    assert 'acme_usage = "acme_connectors.acme_usage:AcmeUsageConnector"' in result.output
    (pkg / "acme_connectors" / "__init__.py").write_text("")
    info = pkg / "acme_connectors-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-connectors\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[revshare.connectors]\nacme_usage = acme_connectors.acme_usage:AcmeUsageConnector\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(pkg), str(REPO), str(REPO / "tests" / "connectors")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "tests")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 passed" in proc.stdout

    again = CliRunner().invoke(app, ["connectors", "new", "oci", "--dest", str(tmp_path)])
    assert again.exit_code == 2 and "already registered" in again.output
    bad = CliRunner().invoke(app, ["connectors", "new", "Acme-Usage", "--dest", str(tmp_path)])
    assert bad.exit_code == 2 and "lower_snake_case" in bad.output
