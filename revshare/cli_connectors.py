"""``revshare connectors list`` and ``revshare connectors new NAME``.

Part of the command line, the one face allowed to import ``connectors``: it does so inside the
commands only, so importing the CLI (and ``revshare --help``) stays cheap and the core never
depends on connectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    no_args_is_help=True,
    help="The registered connectors, and a scaffold for a new one.",
)
console = Console(width=max(Console().width, 140))


@app.command("list")
def list_connectors(
    strict: Annotated[
        bool, typer.Option(help="Exit 1 if any entry point is broken or a type is claimed twice.")
    ] = False,
) -> None:
    """Show every registered connector, where it comes from and its capabilities."""
    from connectors import registry, settings_fields

    reg = registry()
    t = Table(title="Connectors (entry-point group revshare.connectors)")
    for col in ("type", "produces", "formats", "restates", "late days", "pushdown", "origin",
                "settings (? = optional)"):  # fmt: skip
        t.add_column(col)
    for ctype in reg.types():
        r = reg.connectors[ctype]
        c = r.cls.capabilities
        t.add_row(
            ctype,
            c.produces,
            ", ".join(c.formats),
            "yes" if c.restates else "no",
            str(c.late_days),
            "yes" if c.pushdown else "no",
            r.origin,
            ", ".join(settings_fields(r.cls)),
        )
    console.print(t)
    for name, why in sorted(reg.problems.items()):
        console.print(f"[red]unusable[/red] {name}: {why}")
    if strict and reg.problems:
        raise typer.Exit(1)


@app.command("new")
def new_connector(
    name: Annotated[str, typer.Argument(help="Source type, lower_snake_case, e.g. acme_usage.")],
    dest: Annotated[Path, typer.Option(help="Folder to create the connector in.")] = Path(
        "connectors"
    ),
    tests: Annotated[Path, typer.Option(help="Folder for its test module.")] = Path(
        "tests/connectors"
    ),
    package: Annotated[
        str | None, typer.Option(help="Import path of the new folder (default connectors.NAME).")
    ] = None,
) -> None:
    """Scaffold a working connector (module, helpers, settings, README) and its tests."""
    from connectors import registry
    from connectors.scaffold import ScaffoldError, class_name, scaffold

    try:
        files = scaffold(name, dest, tests, package=package, taken=set(registry().types()))
    except ScaffoldError as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    for f in files:
        console.print(f"wrote {f}")
    pkg = package or f"connectors.{name}"
    cls = f"{class_name(name)}Connector"
    hint = (
        f"\nNext: register it. In this repository add {cls} to BUILTIN in "
        "connectors/__init__.py; in another distribution declare\n"
        f'  [project.entry-points."revshare.connectors"]\n  {name} = "{pkg}:{cls}"\n'
        f"Then run: pytest {tests / f'test_{name}.py'}"
    )
    console.print(hint, markup=False)
