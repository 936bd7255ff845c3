"""The command line: ``generate``, ``run``, ``demo``, ``rerun``, ``backfill``, ``runs``, ``prune``.

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
# That temporary server would import every installed Prefect collection (prefect-snowflake
# alone takes 2 s) to register their block types: 15.4 -> 8.6 s to a healthy server without.
# Saving a block registers its own type, so credential blocks still load; a dedicated server
# keeps its own settings. (Both settings: the memo check imports the collections first.)
os.environ.setdefault("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "false")
os.environ.setdefault("PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION", "false")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Reconcile model revenue-share statements against cloud billing.",
)
app.add_typer(cli_connectors.app, name="connectors")
runs_app = typer.Typer(no_args_is_help=True, help="The run ledger: what ran, on what, how.")
app.add_typer(runs_app, name="runs")
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
    from revshare.report import NO_BILLING

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
            NO_BILLING
            if ccy and p.get("billed_revenue") is None
            else f"{p.get('billed_revenue', '—')} {ccy}",
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
def bench(
    rows_per_source: Annotated[
        int, typer.Option("--rows-per-source", help="Billing lines per source (about).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.json/.md.")] = Path(
        "var/bench"
    ),
    references: Annotated[
        str, typer.Option(help="Comma-separated: limit, pandas (or empty for none).")
    ] = "limit,pandas",
    keep: Annotated[bool, typer.Option(help="Keep the generated month and the run.")] = False,
    reuse_month: Annotated[
        bool, typer.Option(help="Measure on the month an earlier --keep run left in --out.")
    ] = False,
) -> None:
    """Benchmark the pipeline against the limit (one DuckDB pass) and the pandas way."""
    from revshare.bench.runner import bench as run_bench

    refs = tuple(r.strip() for r in references.split(",") if r.strip())
    out.mkdir(parents=True, exist_ok=True)
    result = run_bench(rows_per_source, out, references=refs, keep=keep, reuse=reuse_month)
    p = result["pipeline"]
    console.print(
        f"{result['lines_total']:,} lines: pipeline {p['wall_seconds']:.1f} s, "
        f"{p['lines_per_second']:,.0f} lines/s, peak RSS {p['peak_rss_tree_bytes'] / 1e9:.2f} GB"
    )
    for ref in refs:
        r = result[ref]
        console.print(
            f"{ref}: {r['wall_seconds']:.1f} s, peak RSS {r['peak_rss_tree_bytes'] / 1e9:.2f} GB, "
            f"agrees with the pipeline: {r['agreement']['equal']}"
        )
    console.print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")


@app.command()
def demo(
    period: Annotated[str, typer.Option(help="Billing period, YYYY-MM.")] = "2026-10",
    rows: Annotated[int, typer.Option(help="Billing lines per partner (about).")] = 2000,
) -> None:
    """Generate a month into the data folder and reconcile it: the embedded default.

    Statement-only partners are checked against their own history, so their previous month
    (which the generator writes as a clean baseline) is reconciled first."""
    settings = Settings()
    generate(period=period, out=settings.data_dir, rows=rows)
    config = load_config(settings.config_dir)
    only = [pid for pid, p in config.partners.items() if p.statement_only]
    if only:
        run(period=str(Period.parse(period).prev()), partner=only, dry_run=False)
    run(period=period, partner=None, dry_run=False)


PartnerOpt = Annotated[
    list[str] | None, typer.Option("--partner", help="Partner id; repeat for several.")
]


@app.command()
def rerun(
    period: PeriodOpt,
    partner: PartnerOpt = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", help="Re-extract only these: billing, statement or aws/billing; repeat."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Pull remote sources even if cached.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Compute and report; write no ledger.")] = False,
) -> None:
    """Finance rerun of one period: the same flow and parameters as the ``rerun`` deployment,
    run here on Prefect's local API (or the server PREFECT_API_URL names)."""
    _period(period)
    from flows.reconcile import reconcile_period

    result = reconcile_period(
        period=period, partners=partner or None, dry_run=dry_run, sources=source, force=force
    )
    _print_summary(result)


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--from", help="First period, YYYY-MM.")],
    end: Annotated[str, typer.Option("--to", help="Last period, YYYY-MM (inclusive).")],
    partner: PartnerOpt = None,
    force: Annotated[bool, typer.Option(help="Pull remote sources even if cached.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Compute and report; write no ledger.")] = False,
) -> None:
    """Reconcile every period in a range, oldest first; one failing period does not stop
    the others."""
    _period(start), _period(end)
    from flows.schedule import backfill as backfill_flow

    state = backfill_flow(
        start=start, end=end, partners=partner or None, force=force, dry_run=dry_run,
        return_state=True,
    )  # fmt: skip
    rows = state.result(raise_on_failure=False)
    if not isinstance(rows, list):
        console.print(f"[red]backfill failed[/red]: {rows}")
        raise typer.Exit(1)
    for r in rows:
        console.print(f"{r['period']}: {r['status']} {r.get('report', '')}")


def _fmt_time(x: object) -> str:
    return x.strftime("%Y-%m-%d %H:%M:%S") if hasattr(x, "strftime") else str(x or "")


@runs_app.command("list")
def runs_list(
    period: Annotated[str | None, typer.Option(help="Only this period, YYYY-MM.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
) -> None:
    """Recorded runs, newest first (dry runs write no ledger and are not listed). A run shown
    ``running`` whose process is gone (it holds no lock) is marked ``interrupted`` first."""
    from flows.locks import sweep_interrupted
    from revshare import ledger_reads

    settings = Settings()
    sweep_interrupted(settings.home, settings.warehouse_path)
    rows = ledger_reads.list_runs(settings.warehouse_path, period, limit)
    if not rows:
        console.print("no runs recorded")
        return
    t = Table(title="Runs")
    t.add_column("run id", no_wrap=True)
    for col in ("period", "status", "partners", "started (UTC)", "seconds", "report"):
        t.add_column(col, overflow="fold")
    for r in rows:
        secs = r["duration_seconds"]
        t.add_row(
            r["run_id"], r["period"], r["status"], ", ".join(r["partners"] or []),
            _fmt_time(r["started_at"]), f"{secs:.1f}" if secs is not None else "",
            r["report_path"] or "",
        )  # fmt: skip
    console.print(t)


@runs_app.command("mark")
def runs_mark(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    note: Annotated[str, typer.Option(help="Why it is kept (e.g. 'sent to AWS').")] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Remove the mark.")] = False,
) -> None:
    """Mark a run to keep: retention (``revshare prune``) never removes it or its snapshots."""
    from datetime import UTC, datetime

    from revshare import ledger

    try:
        rid = ledger.mark_run(Settings().warehouse_path, run_id, datetime.now(UTC), note, remove)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    console.print(f"{'unmarked' if remove else 'marked'} {rid}")


@app.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option(help="List what would be removed; remove nothing.")
    ] = False,
) -> None:
    """Apply the retention policy (config/retention.yaml): remove run folders, snapshots and
    temp leftovers no kept run needs. Prints one line per item: kind, bytes, path."""
    from flows.schedule import prune as prune_home

    plan = prune_home(dry_run=dry_run)
    for line in plan.lines() if dry_run else []:
        typer.echo(line)
    n = len(plan.paths())
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {n} item(s); kept {len(plan.kept_runs)} run(s)")


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One run: parameters, snapshots used, outcome per partner, timings, report."""
    import json

    from revshare import ledger_reads

    try:
        run = ledger_reads.show_run(Settings().warehouse_path, run_id)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(run, indent=1, default=str))
        return
    console.print(f"[bold]Run {run['run_id']}[/bold] — {run['status']}")
    console.print(f"period {run['period']}; partners {', '.join(run['partners'] or [])}")
    console.print(
        f"started {_fmt_time(run['started_at'])}, finished {_fmt_time(run['finished_at'])}"
        + (f", {run['duration_seconds']:.1f} s" if run.get("duration_seconds") else "")
    )
    if run.get("params"):
        console.print(f"parameters: {json.dumps(run['params'])}")
    if run.get("flow_run_id"):
        console.print(f"Prefect flow run: {run['flow_run_id']}")
    t = Table(title="Sources")
    for col in ("partner", "kind", "type", "snapshot", "rows", "status", "reason"):
        t.add_column(col, overflow="fold")
    for s in run["sources"]:
        t.add_row(
            s["partner"], s["kind"], s["source_type"], s["snapshot_id"] or "",
            str(s["rows"] if s["rows"] is not None else ""), s["status"], s["reason"] or "",
        )  # fmt: skip
    console.print(t)
    if run.get("timings"):
        console.print("timings (s): " + ", ".join(f"{k} {v}" for k, v in run["timings"].items()))
    for partner, n in run.get("discrepancies", []):
        console.print(f"{partner}: {n} discrepancies")
    for n in run.get("notifications", []):
        console.print(f"notification {n['channel']}: {n['status']}")
    console.print(f"Report: {run['report_path']}")


if __name__ == "__main__":
    app()
