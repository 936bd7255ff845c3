"""Extraction policy: which sources are pulled, retried, limited and served from cache.

- **Retries**: the extract task retries transient failures (timeouts, connection errors) with
  exponential backoff; a ``SourceError`` (bad credentials, missing bucket, a delivery that is
  incomplete) is permanent and quarantines at once. Connectors already retry their own SDK's
  transient errors inside one attempt; these task retries cover a whole attempt failing.
- **Timeouts**: each extract and normalize task has a wall-clock limit.
- **Concurrency**: a Prefect global concurrency limit named ``revshare-extract-<type>``
  (e.g. ``revshare-extract-aws_cur2``) caps simultaneous pulls from one source kind across
  every run on the server. Limits are looked up once per run; with none defined, or no API
  to ask (tests calling ``.fn``), extraction runs unlimited rather than failing.
- **Cache**: a remote source (``s3://...`` or a warehouse table) pulled less than
  ``REVSHARE_EXTRACT_CACHE_HOURS`` ago (default 6) for the same settings and period is not
  pulled again: the snapshot it landed is reused. ``force`` pulls anyway. Local sources are
  always re-read: hashing local files is cheap and the content-addressed snapshot id already
  guarantees an unchanged delivery lands nothing new.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from revshare.errors import SourceError
from revshare.periods import Period
from revshare.stages import extract
from revshare.store import Snapshot, open_snapshot

EXTRACT_TIMEOUT = float(os.environ.get("REVSHARE_EXTRACT_TIMEOUT_SECONDS", "1800"))
NORMALIZE_TIMEOUT = float(os.environ.get("REVSHARE_NORMALIZE_TIMEOUT_SECONDS", "1800"))
CACHE_FILE = "_pulls.json"
LIMIT_PREFIX = "revshare-extract-"


@dataclass(frozen=True)
class Pull:
    """What this run may pull: the ``sources`` selection, ``force``, and the extraction
    concurrency limits that exist on the API (looked up once per run)."""

    sources: list[str] | None = None
    force: bool = False
    limits: set[str] = field(default_factory=set)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry anything but a SourceError: those are permanent by the connectors' contract."""
    return not isinstance(getattr(state, "data", None), SourceError)


@task(
    name="extract",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=_transient,
    timeout_seconds=EXTRACT_TIMEOUT,
)
def extract_task(connector: Any, period: Period, landing: Path, limit: str | None) -> Snapshot:
    with _slot(limit):
        return extract(connector, period, landing)


def _slot(limit: str | None) -> AbstractContextManager[Any]:
    if limit is None:
        return nullcontext()
    from prefect.concurrency.sync import concurrency

    return concurrency(limit, occupy=1, timeout_seconds=EXTRACT_TIMEOUT)


def defined_limits() -> set[str]:
    """Names of the extraction limits that exist on the API; empty if none or no API."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            limits = client.read_global_concurrency_limits(limit=200)
        return {x.name for x in limits if x.name.startswith(LIMIT_PREFIX) and x.active}
    except Exception:  # no API, an old server: run unlimited, never fail the night over it
        return set()


def is_remote(settings: dict[str, Any]) -> bool:
    """A source is remote when its data is not under a local path (URL or warehouse)."""
    path = settings.get("path")
    return path is None or "://" in str(path)


def settings_key(source_type: str, settings: dict[str, Any]) -> str:
    blob = json.dumps({"type": source_type, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_hours() -> float:
    return float(os.environ.get("REVSHARE_EXTRACT_CACHE_HOURS", "6"))


def cached_snapshot(landing: Path, key: str, now: datetime | None = None) -> Snapshot | None:
    """The snapshot a pull with these settings landed within the cache window, if any."""
    try:
        entry = json.loads((landing / CACHE_FILE).read_text()).get(key)
    except (OSError, ValueError):
        return None
    if not entry:
        return None
    now = now or datetime.now(UTC)
    if now - datetime.fromisoformat(entry["pulled_at"]) > timedelta(hours=cache_hours()):
        return None
    try:
        return open_snapshot(landing, entry["snapshot"])
    except (OSError, ValueError, KeyError):
        return None


def remember_pull(landing: Path, key: str, snap: Snapshot) -> None:
    """Record a pull (atomically) so the next run within the window can skip it."""
    path = landing / CACHE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = {"snapshot": snap.id, "pulled_at": datetime.now(UTC).isoformat()}
    tmp = path.with_name(f".{CACHE_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def wants_pull(selected: list[str] | None, partner: str, kind: str) -> bool:
    """``sources`` names kinds (``billing``) or partner sources (``aws/billing``)."""
    return selected is None or kind in selected or f"{partner}/{kind}" in selected
