"""The landing zone: immutable, content-addressed snapshots of native deliveries.

A snapshot id is a hash of the delivery's file names and bytes (plus the export's own version
id), so re-pulling unchanged data finds the existing snapshot and writes nothing, while a
changed export lands beside the old one, which stays readable for restatement checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from revshare.errors import SourceError

_MARKER = "_SNAPSHOT.json"
_CHUNK = 1 << 20


class NativeFileLike(Protocol):
    path: Path
    relpath: str


@dataclass(frozen=True)
class Snapshot:
    id: str
    dir: Path
    files: tuple[str, ...]
    version: str | None
    bytes: int

    def file(self, relpath: str) -> Path:
        return self.dir / relpath


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it to ``path``: a
    reader sees the old file or the whole new one, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def safe_relpath(source: str, relpath: str) -> str:
    """Refuse paths that would escape the snapshot folder (absolute, '..', backslashes)."""
    p = PurePosixPath(relpath)
    if not relpath or p.is_absolute() or ".." in p.parts or "\\" in relpath:
        raise SourceError(source, f"unsafe file path in delivery: {relpath!r}")
    return p.as_posix()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def snapshot_id(entries: list[tuple[str, str, int]], version: str | None) -> str:
    payload = json.dumps({"files": sorted(entries), "version": version}, sort_keys=True)
    return "s" + hashlib.sha256(payload.encode()).hexdigest()[:20]


def land(
    files: tuple[NativeFileLike, ...] | list[NativeFileLike],
    root: Path,
    *,
    source: str,
    version: str | None = None,
) -> Snapshot:
    """Copy a delivery into ``root/<snapshot id>/`` unless that snapshot already exists.

    Files are copied into a temporary folder and renamed into place, so a crash never leaves
    a half-written snapshot that looks complete.
    """
    if not files:
        raise SourceError(source, "delivery has no files")
    entries = []
    for f in files:
        rel = safe_relpath(source, f.relpath)
        if not f.path.is_file():
            raise SourceError(source, "file listed in delivery is missing", file=rel)
        entries.append((rel, file_digest(f.path), f.path.stat().st_size))
    sid = snapshot_id(entries, version)
    target = root / sid
    rels = tuple(sorted(e[0] for e in entries))
    size = sum(e[2] for e in entries)
    if (target / _MARKER).exists():
        return Snapshot(sid, target, rels, version, size)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sid}.", dir=root))
    try:
        for f, (rel, _, _) in zip(files, entries, strict=True):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.path, dest)
        meta = {"id": sid, "version": version, "files": [list(e) for e in sorted(entries)]}
        (tmp / _MARKER).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if target.exists():  # a crashed earlier attempt without its marker
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(sid, target, rels, version, size)


def open_snapshot(root: Path, sid: str) -> Snapshot:
    meta = json.loads((root / sid / _MARKER).read_text())
    rels = tuple(e[0] for e in meta["files"])
    return Snapshot(sid, root / sid, rels, meta["version"], sum(e[2] for e in meta["files"]))
