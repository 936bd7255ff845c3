"""Export runs: which folders belong to a period, what a run's manifest promises, and whether
the run is complete.

Shared by the local reader (files on disk) and the Blob Storage pull (blob listings), so both
choose the same run from the same export. Paths here are POSIX strings relative to the
export's root folder (CONTAINER/ROOT), e.g. ``EXPORT/20260801-20260831/202609010617/GUID``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from revshare.periods import Period

MANIFEST = "manifest.json"
_RANGE = re.compile(r"^(\d{8})-(\d{8})$")
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime:
    """ISO time as .NET writes it (7 fractional digits, trailing Z); Python wants <= 6."""
    t = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip())
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def range_matches(name: str, period: Period) -> bool:
    """A date-range folder of ``period``: starts on its first day and ends inside it."""
    m = _RANGE.match(name)
    first = period.start.strftime("%Y%m%d")
    last = (period.end - timedelta(days=1)).strftime("%Y%m%d")
    return bool(m) and m.group(1) == first and first <= m.group(2) <= last


def is_run_manifest(rel_in_range: str) -> bool:
    """``RUN/manifest.json`` (Microsoft's docs) or ``EXPORTTIME/GUID/manifest.json`` (seen in
    real deliveries); nothing deeper or shallower, so partition names are never guessed."""
    parts = rel_in_range.split("/")
    return parts[-1] == MANIFEST and len(parts) in (2, 3) and all(parts)


@dataclass(frozen=True)
class Run:
    """One export run as its manifest describes it."""

    rel: str  # run folder, relative to the export root, no trailing slash
    submitted: datetime
    run_id: str
    doc: dict[str, Any]
    #: (path inside the run folder, promised byteCount), in manifest order
    blobs: tuple[tuple[str, int], ...]


def _inner(name: str, run_rel: str) -> str:
    """Where a manifest blob sits inside its run folder.

    ``blobName`` is container-relative and starts with rootFolderPath; what follows the run
    folder's own path is the blob's place inside the run (a copy may sit under another root).
    """
    i = name.find(run_rel + "/")
    inner = name[i + len(run_rel) + 1 :] if i >= 0 else PurePosixPath(name).name
    p = PurePosixPath(inner)
    # The manifest is data: a name must not lead a download outside the run folder.
    if not inner or p.is_absolute() or ".." in p.parts or "\\" in inner or inner == MANIFEST:
        raise ValueError(f"unsafe blob name in manifest: {name!r}")
    return p.as_posix()


def parse_run(text: str | bytes, rel: str) -> Run:
    """Parse a run's manifest; ValueError says why it cannot be trusted."""
    try:
        doc = json.loads(text)
        run = doc["runInfo"]
        submitted = parse_time(run["submittedTime"])
        listed = doc["blobs"]
        blobs = tuple((_inner(str(b["blobName"]), rel), int(b["byteCount"])) for b in listed)
    except ValueError as e:
        if str(e).startswith("unsafe blob name"):
            raise
        raise ValueError(f"unreadable manifest ({e})") from e
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"unreadable manifest ({e!r})") from e
    if int(doc.get("blobCount", len(blobs))) != len(blobs):
        raise ValueError(f"blobCount {doc.get('blobCount')} but {len(blobs)} blobs listed")
    return Run(rel, submitted, str(run.get("runId") or ""), doc, blobs)


def check_complete(run: Run, size_of: Callable[[str], int | None]) -> None:
    """Raise ValueError unless every blob is there with exactly the promised size.

    ``size_of(inner)`` gives a blob's present size, or None if it is absent. A blob still being
    written (or cut short) is shorter than promised; either way the run is not complete.
    """
    for inner, promised in run.blobs:
        size = size_of(inner)
        if size is None:
            raise ValueError(f"blob missing: {inner}")
        if size != promised:
            raise ValueError(f"blob {inner} has {size} bytes, manifest says {promised}")


def newest(runs: Iterable[Run]) -> Run:
    """The run submitted last (ties broken by folder name, so the choice is stable)."""
    return max(runs, key=lambda r: (r.submitted, r.rel))
