"""The command line: ``revshare generate``, ``revshare run``, ``revshare demo``.

The CLI is the one face on top: it may import flows to run them; nothing imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from revshare import cli_connectors
from revshare.config import Settings, load_config
from revshare.periods import Period

# Prefect's local API starts on demand; on a busy 2-core machine it can need more than the
# default 20 s, and its telemetry would try the network.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Reconcile model revenue-share statements against cloud billing.",
)
app.add_typer(cli_connectors.app, name="connectors")
# Wide enough for the summary table when output goes to a log rather than a terminal.
console = Console(width=max(Console().width, 120))

PeriodOpt = Annotated[str, typer.Option("--period", help="Billing period, YYYY-MM.")]


def _period(text: str) -> Period:
    try:
        return Period.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def generate(
    period: PeriodOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the month into.")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 7,
    rows: Annotated[int, typer.Option(help="Billing lines per partner (about).")] = 2000,
    restate: Annotated[bool, typer.Option(help="Also deliver a restated AWS export.")] = False,
) -> None:
    """Write one month of native exports, statements and the ground truth."""
    from revshare.generate import generate as run_generate

    settings = Settings()
    truth = run_generate(
        load_config(settings.config_dir),
        _period(period),
        out,
        seed=seed,
        rows=rows,
        restate=restate,
    )
    console.print(
        f"wrote {period} to {out}: {len(truth['discrepancies'])} planted "
        f"discrepancies in {out / 'ground_truth.json'}"
    )


def _print_summary(result: dict) -> None:
    t = Table(title=f"Run {result['run_id']} — {result['status']}")
    for col in (
        "partner",
        "status",
        "billed revenue",
        "expected share",
        "reported share",
        "net variance",
        "discrepancies",
    ):
        t.add_column(col, justify="right" if col not in ("partner", "status") else "left")
    for p in result["partners"]:
        ccy = p.get("currency") or ""
        t.add_row(
            p["partner"],
            p["status"],
            f"{p.get('billed_revenue', '—')} {ccy}",
            str(p.get("expected_share", "—")),
            str(p.get("reported_share", "—")),
            str(p.get("net_variance", "—")),
            str(p.get("discrepancies", "—")),
        )
    console.print(t)
    for p in result["partners"]:
        if p["status"] != "reconciled":
            console.print(f"[red]not reconciled[/red] {p['partner']}: {p['reason']}")
    console.print(f"{result['discrepancies']} discrepancies. Report: {result['report']}")


@app.command()
def run(
    period: PeriodOpt,
    partner: Annotated[
        list[str] | None, typer.Option(help="Partner id; repeat for several.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Compute and report; write no ledger.")] = False,
) -> None:
    """Run the reconciliation flow for a period (on Prefect's local API unless configured)."""
    _period(period)
    from flows.reconcile import reconcile_period

    result = reconcile_period(period=period, partners=partner or None, dry_run=dry_run)
    _print_summary(result)


@app.command()
def demo(
    period: Annotated[str, typer.Option(help="Billing period, YYYY-MM.")] = "2026-10",
    rows: Annotated[int, typer.Option(help="Billing lines per partner (about).")] = 2000,
) -> None:
    """Generate a month into the data folder and reconcile it: the embedded default."""
    settings = Settings()
    generate(period=period, out=settings.data_dir, rows=rows)
    run(period=period, partner=None, dry_run=False)


if __name__ == "__main__":
    app()
