"""The one place that talks to Great Expectations.

Suites are JSON files next to this module, reviewed like code. Values known only at run time
(period boundaries, partner id, licensed model ids) are GX ``{"$PARAMETER": name}`` references,
filled from ``params``. Validation runs GX's SQL data source on an in-memory DuckDB over the
Parquet file (``SELECT * FROM read_parquet(...)`` as a query asset), never pandas: billing
snapshots reach tens of millions of rows, and DuckDB streams them where pandas would load them.

GX is imported lazily, inside this module only: the import costs seconds, and the core must not
depend on it. Results come back as ``revshare.quality`` dataclasses.

Pinned to great-expectations 1.24.1 because of the DuckDB workaround below (an internal name).
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import duckdb
import pyarrow.parquet as pq

from revshare.quality import CheckResult, ValidationReport
from revshare.sqlutil import lit

SUITES_DIR = Path(__file__).resolve().parent
#: Rows of unexpected values kept per check in the report (GX's partial_unexpected_count).
SAMPLE_SIZE = 5
#: Message prefix of checks that errored only because a required column is missing.
NOT_RUN = "not run"
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
#: In-memory DuckDB: the Parquet file is the only data; nothing to clean up afterwards.
_DUCKDB_URL = "duckdb:///:memory:"
#: GX's DuckDB may hold a materialized batch (``materialize``): capped, it spills to a
#: temporary folder instead of growing with the file.
GX_MEMORY_LIMIT = "1GB"
#: GX keeps a process-global "current project" and a shared Data Docs folder is one GX project:
#: validations in threads (Prefect's default task runner) take turns. DuckDB parallelizes each.
_LOCK = threading.Lock()


@contextmanager
def _project_lock(data_docs_dir: Path | None) -> Iterator[None]:
    """The thread lock, plus a file lock on the project when there is one: partners fanned
    out to several processes (flows/runners.py) share the run's GX project, whose YAML each
    validation rewrites (adds, then deletes, its data source)."""
    with _LOCK:
        if data_docs_dir is None:
            yield
            return
        Path(data_docs_dir).mkdir(parents=True, exist_ok=True)
        with (Path(data_docs_dir) / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            yield


class _DuckDBDialect(str):
    """``"duckdb"`` shaped like a ``GXSqlDialect`` member: GX compares the tuple entries with
    the engine's dialect name (``==``) and matches connection strings on ``.value``."""

    @property
    def value(self) -> str:
        return str(self)


DUCKDB_DIALECT = _DuckDBDialect("duckdb")


def apply_duckdb_workaround(engine_module: ModuleType) -> None:
    """Make GX keep one DuckDB connection open for the whole validation.

    The trap (GX 1.24.1 + duckdb-engine 0.17): GX opens and closes a pooled connection per
    metric query, and only keeps a persisted connection (StaticPool) for the dialects listed in
    ``_PERSISTED_CONNECTION_DIALECTS``. With DuckDB the result is read after the connection
    closed, so every metric fails with an IndexError that GX swallows into ``exception_info``:
    all expectations report ``success=False`` and nothing is raised. Adding duckdb to that tuple
    before the data source is created fixes it. ``tests/test_quality.py`` removes the entry
    and checks the run then comes back *errored* — so a GX upgrade that renames the constant
    fails loudly here, and one that changes the mechanism fails that test.
    """
    name = "_PERSISTED_CONNECTION_DIALECTS"
    current = getattr(engine_module, name, None)
    if not isinstance(current, tuple):
        raise RuntimeError(
            f"great_expectations {engine_module.__name__}.{name} is gone; the DuckDB "
            "persisted-connection workaround needs revisiting (see expectations/adapter.py)"
        )
    if DUCKDB_DIALECT not in current:
        setattr(engine_module, name, (*current, DUCKDB_DIALECT))


@cache
def _gx() -> ModuleType:
    """Import GX once (slow) and apply the DuckDB workaround before any data source exists."""
    import great_expectations as gx
    from great_expectations.execution_engine import sqlalchemy_execution_engine

    apply_duckdb_workaround(sqlalchemy_execution_engine)
    return gx


def load_suite(suite_name: str, suites_dir: Path = SUITES_DIR) -> dict[str, Any]:
    """The suite as stored (plain JSON; no GX import needed to read or test it)."""
    path = suites_dir / f"{suite_name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no expectation suite {suite_name!r} at {path}")
    suite: dict[str, Any] = json.loads(path.read_text())
    return suite


def _is_ref(value: object) -> bool:
    return isinstance(value, dict) and "$PARAMETER" in value


def suite_parameter_names(suite: Mapping[str, Any]) -> set[str]:
    """Names of the ``$PARAMETER`` references in a suite: top-level kwargs and list items."""
    names = set()
    for e in suite["expectations"]:
        for v in e.get("kwargs", {}).values():
            for item in v if isinstance(v, list) else [v]:
                if _is_ref(item):
                    names.add(item["$PARAMETER"])
    return names


def _resolve_list_refs(suite: dict[str, Any], params: Mapping[str, object]) -> dict[str, Any]:
    """Substitute references *inside lists* (e.g. ``"value_set": [{"$PARAMETER": "partner_id"}]``).

    GX only substitutes a kwarg that is itself a reference, so "x_PartnerId equals $partner_id"
    could not be said with a scalar parameter otherwise (``between`` refuses strings). Top-level
    references are left to GX so its results and Data Docs show them as parameters.
    """
    out = json.loads(json.dumps(suite))
    for e in out["expectations"]:
        kwargs = e.get("kwargs", {})
        for k, v in kwargs.items():
            if isinstance(v, list):
                kwargs[k] = [params[i["$PARAMETER"]] if _is_ref(i) else i for i in v]
    return out


def _param_value(name: str, value: object) -> object:
    """Parameters as JSON-safe values DuckDB compares correctly. Timestamps become ISO 8601 with
    an explicit +00:00 offset, so the comparison does not depend on the session time zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"parameter {name!r} must be timezone-aware (periods are UTC)")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return value


def _errors(exception_info: Mapping[str, Any] | None) -> list[str]:
    """Exception messages in a result's exception_info, in either shape GX uses: flat
    ``{"raised_exception": ...}`` or one such dict per failed metric."""
    if not exception_info:
        return []
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    messages = [
        str(i.get("exception_message") or "unknown error")
        for i in infos
        if isinstance(i, Mapping) and i.get("raised_exception")
    ]
    return list(dict.fromkeys(messages))  # one failing query often breaks several metrics


def _mismatched(res: Mapping[str, Any]) -> list[str]:
    """Missing, then unexpected, column names of a table-columns expectation."""
    m = (res.get("details") or {}).get("mismatched") or {}
    return [*m.get("missing", []), *m.get("unexpected", [])]


def _check(result: Any, suite_name: str, file: str | None) -> CheckResult:
    cfg = result.expectation_config
    kwargs = cfg.kwargs
    meta = cfg.meta or {}
    column = kwargs.get("column") or (
        ",".join(kwargs["column_list"]) if kwargs.get("column_list") else None
    )
    column = column or meta.get("column")
    errors = _errors(result.exception_info)
    # A result whose success is None was not evaluated either.
    errored = bool(errors) or result.success is None
    result_success = bool(result.success)
    res = result.result or {}
    count = res.get("unexpected_count")
    sample = res.get("partial_unexpected_list") or []
    if cfg.type == "unexpected_rows_expectation":
        count = res.get("observed_value")
        sample = (res.get("details") or {}).get("unexpected_rows") or []
    elif cfg.type.startswith("expect_table_columns"):
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        sample = _mismatched(res)
        if kwargs.get("exact_match") is False:
            sample = mismatched.get("missing", [])  # the others are allowed extras
        if meta.get("only_unexpected") and not errored:
            # "No column outside the known set": GX's exact match also fails on a known
            # column that is absent, which for optional columns is no drift at all.
            sample = mismatched.get("unexpected", [])
            result_success = not sample
        column = column or (", ".join(sample) if sample else None)
    elif cfg.type.startswith("expect_table_row_count") and not result_success:
        sample = [f"{res.get('observed_value')} rows"]
    message = "; ".join(errors) if errors else (cfg.description or "")
    if not errored and not result_success and meta.get("message"):
        message = str(meta["message"])
    return CheckResult(
        expectation=cfg.type,
        column=column,
        success=result_success and not errored,
        errored=errored,
        unexpected_count=None if errored or count is None else int(count),
        unexpected_sample=[str(s) for s in sample[:SAMPLE_SIZE]],
        message=message,
        check=str(meta.get("check") or cfg.type),
        severity="warn" if meta.get("severity") == "warn" else "block",
        suite=suite_name,
        file=file,
    )


def _suite_order(suite: Any) -> Any:
    """Sort key putting results back in suite order (GX groups them by metric domain)."""
    index = {e.id: i for i, e in enumerate(suite.expectations)}
    return lambda r: index.get(r.expectation_config.id, len(index))


def validate_parquet(
    path: Path,
    suite_name: str,
    *,
    source: str,
    params: dict[str, object],
    data_docs_dir: Path | None = None,
    suites_dir: Path = SUITES_DIR,
    build_docs: bool = True,
) -> ValidationReport:
    """Validate one Parquet file (canonical rows) against a stored suite; see validate_query."""
    path = Path(path).resolve()
    return validate_query(
        f"SELECT * FROM read_parquet({lit(path)})",
        suite_name,
        source=source,
        params=params,
        data_docs_dir=data_docs_dir,
        suites_dir=suites_dir,
        build_docs=build_docs,
        asset_name=path.stem,
        rows=pq.ParquetFile(path).metadata.num_rows,
    )


def validate_query(
    sql: str,
    suite_name: str,
    *,
    source: str,
    params: dict[str, object],
    file: str | None = None,
    data_docs_dir: Path | None = None,
    suites_dir: Path = SUITES_DIR,
    build_docs: bool = True,
    asset_name: str = "data",
    rows: int | None = None,
    materialize: bool = False,
) -> ValidationReport:
    """Validate the rows of one DuckDB SELECT (e.g. over a landed native file); never raises
    for bad *data*.

    ``source`` names the data in the report (e.g. ``aws/billing``), ``file`` the native file
    the SELECT reads (named in every failing check). ``params`` must supply every
    ``$PARAMETER`` the suite uses. A SELECT DuckDB cannot read to the end (a truncated or
    corrupt file) yields one errored ``readable`` check naming the file and DuckDB's message,
    so the quarantine reason says what broke rather than listing every check as errored.
    With ``data_docs_dir``, a file-backed GX project is kept there and the results stored;
    ``build_docs`` (re)builds its Data Docs (``<dir>/gx/uncommitted/data_docs/local_site/``).
    Without it, an ephemeral context leaves nothing on disk. ``materialize`` has GX run the
    SELECT once into a temporary table that every check then reads: for text formats (gzipped
    JSON, CSV), which each check would otherwise parse again (measured: 101 s -> 27 s for a
    500,000-row Cloud Billing file and its 9 checks). Parquet reads only the columns a check
    needs, so there copying every column first costs more than it saves.
    """
    suite_dict = load_suite(suite_name, suites_dir)
    missing = suite_parameter_names(suite_dict) - set(params)
    if missing:
        raise ValueError(f"suite {suite_name} needs parameters: {', '.join(sorted(missing))}")
    if sql.lstrip()[:7].upper() != "SELECT ":
        sql = f"SELECT * FROM ({sql})"  # GX's query asset wants "SELECT " first (a WITH, ...)
    if rows is None:
        try:
            rows = count_rows(sql)
        except duckdb.Error as exc:
            return _unreadable(suite_name, source, file, exc)

    gx = _gx()
    gx_params = {k: _param_value(k, v) for k, v in params.items()}
    resolved = _resolve_list_refs(suite_dict, gx_params)
    with _project_lock(data_docs_dir):
        checks = _run(
            gx, sql, asset_name, suite_name, resolved, gx_params, data_docs_dir, build_docs, file,
            materialize=materialize,
        )  # fmt: skip
    checks = tuple(_with_sample_rows(c, sql, resolved) for c in checks)
    return ValidationReport(suite=suite_name, source=source, rows=rows, checks=checks)


def count_rows(sql: str) -> int:
    """Rows of a SELECT, read to the end (so a truncated file fails here, not half-way)."""
    con = duckdb.connect()
    try:
        row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


#: Expectations whose result on rows of several files is the result on each: per-row value
#: checks, the column set (when the files share it), "at least one row" (when none is empty),
#: and a row count to equal a parameter (``row_count_params``: the caller groups only files
#: whose rows equal their own value, and passes the sum). Anything else, e.g. a row count to
#: equal a constant or a GROUP BY query, is not.
_ROW_WISE_TYPES = frozenset({
    "expect_column_values_to_be_in_set", "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between", "expect_table_columns_to_match_set",
    "expect_table_row_count_to_be_between", "unexpected_rows_expectation",
})  # fmt: skip
#: A row query: ``SELECT ... FROM {batch} WHERE ...`` with no aggregate, window or subquery.
_ROW_QUERY = re.compile(r"^\s*SELECT\s.+?\sFROM\s+\{batch\}\s+WHERE\s", re.I | re.S)
_NOT_ROW_WISE = re.compile(
    r"\b(GROUP\s+BY|HAVING|OVER|LIMIT|DISTINCT|count|sum|min|max|avg|any_value)\b|\(\s*SELECT", re.I
)


@cache
def row_wise(suite_name: str, suites_dir: Path = SUITES_DIR) -> bool:
    """Whether the suite, run once over the rows of several non-empty files with the same
    columns, gives each check the result it gives on every file alone (when it passes).

    Decided from the stored suite, conservatively: only the expectation types above, no
    ``mostly``, row counts bounded below by at most one row or equal to a row count
    parameter (``row_count_params``), and row queries only."""
    counts = row_count_params(suite_name, suites_dir)
    for e in load_suite(suite_name, suites_dir)["expectations"]:
        kwargs = e.get("kwargs", {})
        if e["type"] == "expect_table_row_count_to_equal" and _count_param(kwargs) in counts:
            continue
        if e["type"] not in _ROW_WISE_TYPES or "mostly" in kwargs:
            return False
        if e["type"] == "expect_table_row_count_to_be_between" and (
            kwargs.get("max_value") is not None or kwargs.get("min_value") not in (None, 0, 1)
        ):
            return False
        query = kwargs.get("unexpected_rows_query")
        if query is not None and (not _ROW_QUERY.match(query) or _NOT_ROW_WISE.search(query)):
            return False
    return True


@cache
def row_count_params(suite_name: str, suites_dir: Path = SUITES_DIR) -> frozenset[str]:
    """The suite's parameters that only say how many rows the file has (the value of a row
    count to equal, e.g. Azure's manifest tie-out). Over several files such a check holds
    for each file when each has its own count, and the union then has their sum."""
    counts, other = set(), set()
    for e in load_suite(suite_name, suites_dir)["expectations"]:
        kwargs = e.get("kwargs", {})
        name = _count_param(kwargs) if e["type"] == "expect_table_row_count_to_equal" else None
        if name:
            counts.add(name)
        else:
            other |= set(re.findall(r'"\$PARAMETER":\s*"([^"]+)"', json.dumps(kwargs)))
    return frozenset(counts - other)


def _count_param(kwargs: dict) -> str | None:
    value = kwargs.get("value")
    return value.get("$PARAMETER") if isinstance(value, dict) and len(kwargs) == 1 else None


def shape_of(sql: str) -> tuple[int, tuple[tuple[str, str], ...]]:
    """The rows of a SELECT (read to the end) and its columns' (name, type), in order."""
    con = duckdb.connect()
    try:
        columns = tuple((r[0], r[1]) for r in con.execute(f"DESCRIBE ({sql})").fetchall())
        return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]), columns
    finally:
        con.close()


def _unreadable(suite_name: str, source: str, file: str | None, exc: Exception) -> ValidationReport:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    check = CheckResult(
        expectation="readable",
        column=None,
        success=False,
        errored=True,
        unexpected_count=None,
        unexpected_sample=[],
        message=f"cannot read: {first}",
        check="readable",
        suite=suite_name,
        file=file,
    )
    return ValidationReport(suite=suite_name, source=source, rows=0, checks=(check,))


#: The columns that place a canonical row in its source file, in sort order.
_LINEAGE = ("x_SourceFile", "x_SourceRow", "x_NativeLineId")


def _with_sample_rows(check: CheckResult, sql: str, suite: Mapping[str, Any]) -> CheckResult:
    """A few offending rows for a failed query check (GX's SUMMARY format returns only a
    count for those; asking GX for COMPLETE would return every row of a 10M-row file)."""
    if check.success or check.errored or check.expectation != "unexpected_rows_expectation":
        return check
    query = next(
        (
            e["kwargs"]["unexpected_rows_query"]
            for e in suite["expectations"]
            if e["type"] == check.expectation
            and ((e.get("meta") or {}).get("check") or e["type"]) == check.check
        ),
        None,
    )
    if query is None:
        return check
    rows_sql = query.format(batch=f"({sql}) AS batch")
    con = duckdb.connect()
    try:
        # Ordered: the files are written without insertion order (``revshare.stages``), so
        # "the first rows" would differ from one run to the next. By lineage where the rows
        # carry it (the sample is then the file's first offending rows), else by every column.
        names = con.sql(rows_sql).columns  # bound, not run
        order = ", ".join(f'"{c}"' for c in _LINEAGE if c in names) or "ALL"
        cur = con.execute(f"SELECT * FROM ({rows_sql}) ORDER BY {order} LIMIT {SAMPLE_SIZE}")
        rows = [
            {n: str(v) for n, v in zip(names, r, strict=True) if v is not None}
            for r in cur.fetchall()
        ]
    except duckdb.Error:
        return check  # the sample is a courtesy; the count stands
    finally:
        con.close()
    col = check.column if check.column and "," not in check.column else None
    sample = check.unexpected_sample or [
        str(r.get(col)) if col and col in r else ", ".join(f"{k}={v}" for k, v in r.items())[:120]
        for r in rows
    ]
    return replace(check, sample_rows=rows, unexpected_sample=sample)


def build_data_docs(data_docs_dir: Path) -> Path | None:
    """Rebuild the Data Docs of the GX project in ``data_docs_dir``; the index, if any."""
    if not (Path(data_docs_dir) / "gx").is_dir():
        return None
    gx = _gx()
    with _project_lock(data_docs_dir):
        context = gx.get_context(mode="file", project_root_dir=str(data_docs_dir))
        context.build_data_docs()
    index = Path(data_docs_dir) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return index if index.is_file() else None


def _run(
    gx: ModuleType,
    sql: str,
    asset_name: str,
    suite_name: str,
    suite_dict: dict[str, Any],
    gx_params: dict[str, object],
    data_docs_dir: Path | None,
    build_docs: bool,
    file: str | None,
    *,
    materialize: bool = False,
) -> tuple[CheckResult, ...]:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if data_docs_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(data_docs_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)

    run = f"{suite_name}-{uuid.uuid4().hex[:8]}"
    spill = tempfile.mkdtemp(prefix="revshare-gx-")
    try:
        return _run_in(context, gx, run, sql, asset_name, suite_name, suite_dict, gx_params,
                       data_docs_dir, build_docs, file, materialize, spill)  # fmt: skip
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _run_in(
    context: Any, gx: ModuleType, run: str, sql: str, asset_name: str, suite_name: str,
    suite_dict: dict[str, Any], gx_params: dict[str, object], data_docs_dir: Path | None,
    build_docs: bool, file: str | None, materialize: bool, spill: str,
) -> tuple[CheckResult, ...]:  # fmt: skip
    url = f"{_DUCKDB_URL}?memory_limit={GX_MEMORY_LIMIT}&temp_directory={quote(spill)}"
    datasource = context.data_sources.add_sql(
        name=run, connection_string=url, create_temp_table=materialize
    )
    asset = datasource.add_query_asset(name=asset_name or "data", query=sql)
    batch = asset.add_batch_definition_whole_table("all")
    suite_body = {k: v for k, v in suite_dict.items() if k in ("expectations", "meta", "notes")}
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, **suite_body))
    if len(suite.expectations) != len(suite_dict["expectations"]):
        # GX logs and skips invalid expectation configs; a suite must not shrink silently.
        raise ValueError(f"suite {suite_name}: GX rejected some expectations (see log)")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=run, data=batch, suite=suite)
    )
    try:
        result = definition.run(
            expectation_parameters=gx_params,
            result_format=_RESULT_FORMAT,
        )
    finally:
        datasource.get_execution_engine().close()  # free the batch now, not at GC
    if data_docs_dir is not None:
        if build_docs:
            context.build_data_docs()
        # Keep the project small: the suite and results stay, the run's plumbing goes.
        context.validation_definitions.delete(run)
        context.data_sources.delete(run)

    ordered = sorted(result.results, key=_suite_order(suite))
    return _not_run(tuple(_check(r, suite_name, file) for r in ordered))


def _not_run(checks: tuple[CheckResult, ...]) -> tuple[CheckResult, ...]:
    """With required columns missing, the checks that read them error with pages of SQL:
    say once why they did not run (they stay errored, i.e. blocking)."""
    missing = [c for c in checks if c.check == "required_columns" and c.failed and not c.errored]
    if not missing:
        return checks
    why = f"{NOT_RUN}: required column(s) missing: {missing[0].column}"
    return tuple(replace(c, message=why) if c.errored else c for c in checks)
