"""Data-quality gates of a run: native files, then canonical lines, then partner-level checks.

Orchestration only: *what* is checked lives in ``expectations/*.json`` (run through
``expectations.adapter``), *how much it matters* in ``config/quality.yaml``
(``revshare.quality_config``). Each gate records its report on the source's outcome and raises
``SourceError`` when the source's policy says quarantine, so ``flows/reconcile.py`` keeps one
``try`` per source and a failing source never takes another partner down with it.

Order matters for the reason an operator reads: the native suite runs on the landed files
before normalization, so a renamed column is reported against the vendor's file and column
name, not as a cast error in our SQL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from connectors.base import Connector, NativeRelation, NormalizeContext
from expectations.adapter import (
    build_data_docs,
    row_count_params,
    row_wise,
    shape_of,
    validate_parquet,
    validate_query,
)
from revshare.config import Settings
from revshare.errors import SourceError
from revshare.outcome import PartnerOutcome, SourceOutcome
from revshare.quality import ValidationReport
from revshare.quality_config import QualityConfig, load_quality_config
from revshare.runs import RunPaths
from revshare.sqlutil import lit

SUITES = {"billing": "canonical_billing", "statement": "statements", "probe": "canonical_billing"}


def _call(t: Any, *args: Any, tasks: bool) -> Any:
    """Run ``t`` as a Prefect task (in a flow) or as the plain function (tests, scripts)."""
    return t(*args) if tasks else t.fn(*args)


def quality_config() -> QualityConfig:
    """The run's quality policy (``<REVSHARE_CONFIG_DIR>/quality.yaml``; defaults if absent)."""
    return load_quality_config(Settings().config_dir)


@task(name="validate-native", cache_policy=NO_CACHE)
def native_task(
    connector: Connector, ctx: NormalizeContext, source: str, docs: Path | None
) -> list[ValidationReport]:
    """One report per landed native file the connector exposes (none: no native suite).

    Files that read alike (``_alike``) are validated together first, as one SELECT. If every
    check passes, each file gets those passing checks: what it would get alone, since the
    files have the same columns, are none of them empty, and a value check passes on the
    whole only if it passes on every file. Otherwise each file of the group is validated
    alone, so that failures and warnings name their file. Validated one by one, GX's own
    work was about 0.13 to 0.18 s a file, and each check's query read one small file at a time."""
    reports: list[ValidationReport] = []
    for group in _alike(connector.native_relations(ctx)):
        if len(group) > 1:
            first = group[0][0]
            rows = sum(n for _, n in group)
            # A row count parameter is each file's own count (``_alike``): the union has the sum.
            counts = dict.fromkeys(row_count_params(first.suite), rows)
            joined = _validate(
                " UNION ALL ".join(f"SELECT * FROM ({rel.sql})" for rel, _ in group),
                replace(first, params={**first.params, **counts}), source, docs, rows=rows,
                file=None, asset=f"{_asset(first)}-and-{len(group) - 1}-more",
            )  # fmt: skip
            if joined.clean:
                reports += [joined.for_file(rel.file, n) for rel, n in group]
                continue
        reports += [
            _validate(rel.sql, rel, source, docs, rows=n, file=rel.file, asset=_asset(rel))
            for rel, n in group
        ]
    return reports


def _validate(
    sql: str, rel: NativeRelation, source: str, docs: Path | None, *, rows: int | None,
    file: str | None, asset: str,
) -> ValidationReport:  # fmt: skip
    """``sql`` (``rel``'s file, or several like it) through ``rel``'s suite."""
    return validate_query(
        sql,
        rel.suite,
        source=source,
        params=rel.params,
        file=file,
        data_docs_dir=docs,
        build_docs=False,
        asset_name=asset,
        rows=rows,
        # Parse JSON/CSV once, not once per check; Parquet is read column by column.
        materialize=not _parquet(rel),
    )


def _asset(rel: NativeRelation) -> str:
    return Path(rel.file).name.split(".")[0] or "data"


def _parquet(rel: NativeRelation) -> bool:
    return rel.columnar or rel.file.endswith(".parquet")


def _alike(rels: list[NativeRelation]) -> list[list[tuple[NativeRelation, int | None]]]:
    """The relations in order, consecutive ones grouped when they read Parquet, are not
    empty, and share their suite (one whose checks are row-wise, ``row_wise``), parameters
    and columns (names and types, in order); each with its row count when it could be read
    (None: it is validated alone, which reports why it cannot be read).

    A row count parameter (``row_count_params``: Azure's manifest tie-out) differs from file
    to file: it is left out of the comparison, and a file is grouped only if it has exactly
    that many rows (otherwise it is validated alone, and fails there, naming the file)."""
    groups: list[list[tuple[NativeRelation, int | None]]] = []
    last: object = None
    for rel in rels:
        key, rows = None, None
        if _parquet(rel) and row_wise(rel.suite):
            try:
                rows, columns = shape_of(rel.sql)
            except duckdb.Error:
                rows = None
            else:
                counts = row_count_params(rel.suite)
                own = {k: v for k, v in rel.params.items() if k not in counts}
                params = json.dumps(own, sort_keys=True, default=str)
                tied = all(rel.params.get(k) == rows for k in counts)
                key = (rel.suite, params, columns) if rows and tied else None
        if key is not None and key == last:
            groups[-1].append((rel, rows))
        else:
            groups.append([(rel, rows)])
        last = key
    return groups


@task(name="validate", cache_policy=NO_CACHE)
def canonical_task(
    path: Path, kind: str, source: str, params: dict[str, Any], docs: Path | None
) -> ValidationReport:
    return validate_parquet(
        path, SUITES[kind], source=source, params=params, data_docs_dir=docs, build_docs=False
    )


@task(name="validate-completeness", cache_policy=NO_CACHE)
def completeness_task(billing: Path, statement: Path, source: str, docs: Path | None):
    """Models and regions with licensed usage in the billing that the statement omits."""
    sql = (
        'WITH b AS (SELECT "x_ModelId", "RegionId", count(*) AS billing_lines '
        f'FROM read_parquet({lit(billing)}) WHERE "x_ModelId" IS NOT NULL '
        "AND \"ChargeCategory\" = 'Usage' GROUP BY ALL), "
        f's AS (SELECT DISTINCT "x_ModelId", "RegionId" FROM read_parquet({lit(statement)})) '
        'SELECT b.*, EXISTS (SELECT 1 FROM s WHERE s."x_ModelId" = b."x_ModelId" AND '
        '(s."RegionId" IS NULL OR b."RegionId" IS NULL OR s."RegionId" = b."RegionId")) '
        "AS in_statement FROM b"
    )
    return validate_query(
        sql,
        "statement_completeness",
        source=source,
        params={},
        data_docs_dir=docs,
        build_docs=False,
        asset_name="completeness",
    )


def _gate(so: SourceOutcome, report: ValidationReport, quality: QualityConfig) -> None:
    """Record ``report`` on the outcome; raise SourceError if the source's policy quarantines.

    Errors and blocking failures follow the source's policy (``report`` keeps the source and
    only reports); warnings never quarantine."""
    so.validation = report
    policy = quality.policy(f"{so.partner}/{so.kind}")
    errored = report.errored and policy.on_error == "quarantine"
    blocked = any(not c.errored for c in report.blocking) and policy.on_block == "quarantine"
    if errored or blocked or not report.checks:
        raise SourceError(f"{so.partner}/{so.kind}", "failed validation: " + report.reason())


def check_native(
    so: SourceOutcome,
    connector: Connector,
    ctx: NormalizeContext,
    paths: RunPaths,
    quality: QualityConfig | None = None,
    *,
    tasks: bool = True,
) -> None:
    """Validate the landed native files; on a blocking failure raise SourceError."""
    quality = quality or quality_config()
    source = f"{so.partner}/{so.kind}"
    reports = _call(native_task, connector, ctx, source, paths.data_docs, tasks=tasks)
    if not reports:
        return
    rows = sum(r.rows for r in reports)
    merged = ValidationReport.merge(source, reports, rows).with_severities(quality.severity)
    _gate(so, merged, quality)


def check_canonical(
    so: SourceOutcome,
    path: Path,
    params: dict[str, Any],
    paths: RunPaths,
    quality: QualityConfig | None = None,
    *,
    tasks: bool = True,
) -> None:
    """Validate the canonical lines, joined to the native report already on ``so``."""
    quality = quality or quality_config()
    source = f"{so.partner}/{so.kind}"
    report = _call(canonical_task, path, so.kind, source, params, paths.data_docs, tasks=tasks)
    earlier = [so.validation] if so.validation is not None else []
    merged = ValidationReport.merge(source, [*earlier, report], report.rows)
    _gate(so, merged.with_severities(quality.severity), quality)


def check_completeness(
    outcome: PartnerOutcome, paths: RunPaths, quality: QualityConfig | None = None
) -> None:
    """Partner-level checks once both sources passed; recorded on the statement's outcome.

    Warn-level by design (the reconciliation prices what is missing); should config make it
    blocking, the partner is quarantined like any other source."""
    quality = quality or quality_config()
    so = next(s for s in outcome.sources if s.kind == "statement")
    report = completeness_task(
        paths.canonical(outcome.partner, "billing"),
        paths.canonical(outcome.partner, "statement"),
        f"{outcome.partner}/statement",
        paths.data_docs,
    )
    earlier = [so.validation] if so.validation is not None else []
    rows = so.validation.rows if so.validation is not None else report.rows
    merged = ValidationReport.merge(report.source, [*earlier, report], rows)
    try:
        _gate(so, merged.with_severities(quality.severity), quality)
    except SourceError as exc:
        so.status, so.reason = "quarantined", str(exc)
        outcome.quarantine(str(exc))


def summary_rows(outcomes: list[PartnerOutcome]) -> list[dict[str, object]]:
    """Every failing or warning check of the run, one row each (the artifact's table)."""
    return [
        row
        for o in outcomes
        for s in o.sources
        if s.validation is not None
        for row in s.validation.summary_rows()
    ]


def summary_markdown(outcomes: list[PartnerOutcome], data_docs: str | None) -> str:
    lines = [
        "# Data quality",
        "",
        "| source | suites | checks | blocking | warnings | rows | rows affected | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for o in outcomes:
        for s in o.sources:
            v = s.validation
            if v is None:
                lines.append(f"| {s.partner}/{s.kind} | — | | | | | | {s.status} |")
                continue
            lines.append(
                f"| {v.source} | {v.suite} | {len(v.checks)} | {len(v.blocking)} | "
                f"{len(v.warnings)} | {v.rows} | {v.rows_affected} | {s.status} |"
            )
    rows = summary_rows(outcomes)
    if rows:
        lines += ["", "| source | file | check | column | severity | rows | sample |"]
        lines.append("| --- | --- | --- | --- | --- | ---: | --- |")
        for r in rows:
            sample = str(r["sample"]).replace("|", "\\|")[:120]
            lines.append(
                f"| {r['source']} | {r['file']} | {r['check']} | {r['column']} | "
                f"{r['severity']} | {r['rows_affected'] if r['rows_affected'] is not None else ''}"
                f" | {sample} |"
            )
    if data_docs:
        lines += ["", f"Great Expectations Data Docs: `{data_docs}`"]
    return "\n".join(lines)


def finish(outcomes: list[PartnerOutcome], paths: RunPaths, run_id: str) -> Path | None:
    """Build the run's Data Docs once (not per file) and publish the quality artifacts."""
    index = build_data_docs(paths.data_docs)
    # Name the index where it will be once the run folder is renamed into place.
    shown = paths.final / index.relative_to(paths.root) if index else None
    create_markdown_artifact(
        summary_markdown(outcomes, str(shown) if shown else None),
        key="data-quality",
        description=f"Run {run_id}: data-quality summary",
    )
    rows = summary_rows(outcomes)
    if rows:
        create_table_artifact(
            rows, key="data-quality-failures", description=f"Run {run_id}: failing checks"
        )
    return index
