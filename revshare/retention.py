"""Retention: keep disk use bounded without ever losing what a kept report points at.

Run folders, landing snapshots and staging leftovers grow with every run; ``plan`` decides
what may go (``config/retention.yaml``) and ``apply`` removes it. The rules, in order of
precedence:

- **Runs kept**: per period the last ``keep_runs_per_period`` runs (run ids sort by start
  time), the latest run that reported figures (completed or partial) however old, every run
  finance marked, and every run in progress (holding a lock or still ``running``).
- **Snapshots kept**: every snapshot a kept run used (its ledger rows and its ``run.json``,
  so a dry run's report is covered too), the billing snapshot each kept statement was first
  checked against (the restatement baseline a later run re-reads), the newest snapshot of
  every source, and all snapshots of a (period, partner) a live run is working on.
- **Removed**: other run folders; snapshots no kept run references; the ``.partial``
  folder of a run that is not alive; landing staging/temp folders older than
  ``temp_max_age_hours``.

The ledger (``runs``, ``run_sources``, result tables) is history and is not pruned. A
snapshot is renamed to a temporary name before it is deleted, so a half-deleted snapshot is
never mistaken for a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import Field

from revshare import ledger_reads
from revshare.config import Settings
from revshare.runs import RUN_ID, partial_run_id
from revshare.strict import Strict

_MARKER = "_SNAPSHOT.json"  # revshare.store's completion marker
_REPORTED = ("completed", "partial")


class RetentionConfig(Strict):
    #: Runs kept per period, newest first (the latest reported one is kept besides).
    keep_runs_per_period: int = Field(default=3, ge=1)
    #: Also keep each period's latest completed or partial run, however many came after.
    keep_latest_reported: bool = True
    #: Landing staging/temp folders older than this are leftovers of a killed pull.
    temp_max_age_hours: float = Field(default=6, gt=0)


def load_retention_config(config_dir: Path) -> RetentionConfig:
    """Read ``<config_dir>/retention.yaml``; a missing file means the defaults."""
    path = Path(config_dir) / "retention.yaml"
    if not path.is_file():
        return RetentionConfig()
    return RetentionConfig.model_validate(yaml.safe_load(path.read_text()) or {})


@dataclass
class Plan:
    """What ``apply`` removes, and what was kept (for the dry run and the tests)."""

    runs: list[Path] = field(default_factory=list)
    partials: list[Path] = field(default_factory=list)
    snapshots: list[Path] = field(default_factory=list)
    temp: list[Path] = field(default_factory=list)
    kept_runs: set[str] = field(default_factory=set)
    kept_snapshots: set[Path] = field(default_factory=set)

    def paths(self) -> list[Path]:
        return [*self.runs, *self.partials, *self.snapshots, *self.temp]

    def lines(self) -> list[str]:
        """One line per item: its kind, size and path (the ``--dry-run`` listing)."""
        kinds = (("run", self.runs), ("partial run", self.partials))
        kinds += (("snapshot", self.snapshots), ("temp", self.temp))
        return [f"{kind}\t{disk_usage(p)}\t{p}" for kind, ps in kinds for p in ps]


def disk_usage(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _kept_runs(
    runs: list[dict], folder_ids: Iterable[str], cfg: RetentionConfig, live: set[str]
) -> set[str]:
    status = {r["run_id"]: r["status"] for r in runs}
    by_period: dict[str, list[str]] = {}
    for rid in {*status, *folder_ids}:
        by_period.setdefault(rid[:7], []).append(rid)
    kept = {r["run_id"] for r in runs if r["marked"] or r["status"] == ledger_reads.RUNNING}
    kept |= live
    for ids in by_period.values():
        ids.sort(reverse=True)  # a run id starts with its period and UTC start time
        kept.update(ids[: cfg.keep_runs_per_period])
        reported = [i for i in ids if status.get(i) in _REPORTED]
        if cfg.keep_latest_reported and reported:
            kept.add(reported[0])
    return kept


def _run_json_refs(folder: Path) -> set[tuple[str, str, str, str]]:
    """(partner, kind, period, snapshot) a run folder's report was built from."""
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return set()
    return {
        (s["partner"], s["kind"], meta["period"], s["snapshot_id"])
        for s in meta.get("sources", [])
        if s.get("snapshot_id")
    }


def _snapshots(landing: Path) -> dict[tuple[str, str, str], list[Path]]:
    """(partner, kind, period) -> its complete snapshot folders, oldest first."""
    out: dict[tuple[str, str, str], list[Path]] = {}
    for marker in landing.glob(f"*/*/*/*/{_MARKER}"):
        snap = marker.parent
        key = (snap.parents[2].name, snap.parents[1].name, snap.parent.name)
        out.setdefault(key, []).append(snap)
    for snaps in out.values():
        snaps.sort(key=lambda p: ((p / _MARKER).stat().st_mtime, p.name))
    return out


def _temp_leftovers(landing: Path, max_age_hours: float, now: float) -> list[Path]:
    """Hidden staging/temp entries of the landing zone older than the limit."""
    cutoff = now - max_age_hours * 3600
    out = []
    for p in landing.glob("*/*/*/.*"):
        try:
            if p.lstat().st_mtime < cutoff:
                out.append(p)
        except FileNotFoundError:
            continue
    return sorted(out)


def plan(
    runs_dir: Path,
    landing_dir: Path,
    warehouse: Path,
    cfg: RetentionConfig,
    live: dict[str, set[tuple[str, str]]],
    now: float | None = None,
) -> Plan:
    """Decide what may be removed. ``live``: run id -> (period, partner) pairs it is working
    on, from the lock files (``flows.locks.live_runs``); those are never touched."""
    now = time.time() if now is None else now
    runs, sources = ledger_reads.retention_inputs(warehouse)
    folders = {p.name: p for p in _children(runs_dir) if RUN_ID.match(p.name) and p.is_dir()}
    kept = _kept_runs(runs, folders, cfg, set(live))
    out = Plan(kept_runs=kept)
    out.runs = sorted(p for rid, p in folders.items() if rid not in kept)
    out.partials = sorted(
        p for p in _children(runs_dir) if (rid := partial_run_id(p)) and rid not in kept
    )
    refs: set[tuple[str, str, str, str]] = set()
    for s in sources:
        if s["run_id"] in kept:
            refs.add((s["partner"], s["kind"], s["period"], s["snapshot_id"]))
            if s["baseline"]:
                refs.add((s["partner"], "billing", s["period"], s["baseline"]))
    for rid in kept & set(folders):
        refs |= _run_json_refs(folders[rid])
    busy = {pair for pairs in live.values() for pair in pairs}
    for (partner, kind, period), snaps in _snapshots(landing_dir).items():
        for i, snap in enumerate(snaps):
            keep = (
                (partner, kind, period, snap.name) in refs
                or i == len(snaps) - 1  # the newest: a pull's result not yet used by a run
                or (period, partner) in busy
            )
            (out.kept_snapshots.add if keep else out.snapshots.append)(snap)
    out.temp = _temp_leftovers(landing_dir, cfg.temp_max_age_hours, now)
    out.temp += [p for p in _children(runs_dir) if ".deleting-" in p.name]  # a crashed prune
    return out


def plan_home(settings: Settings, live: dict[str, set[tuple[str, str]]]) -> Plan:
    """``plan`` for the configured home (``REVSHARE_HOME``) and ``retention.yaml``."""
    cfg = load_retention_config(settings.config_dir)
    return plan(settings.runs_dir, settings.landing_dir, settings.warehouse_path, cfg, live)


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def apply(p: Plan) -> int:
    """Remove everything ``p`` lists; returns the bytes freed. Snapshots and run folders are
    renamed to a hidden name first, so nothing half-deleted looks complete."""
    freed = 0
    for path in p.paths():
        if not os.path.lexists(path):
            continue
        freed += disk_usage(path)
        if path.is_dir() and not path.is_symlink():
            doomed = path.with_name(f".{path.name.lstrip('.')}.deleting-{os.getpid()}")
            os.replace(path, doomed)
            shutil.rmtree(doomed)
        else:
            path.unlink()
    return freed
