"""Real local object stores for the remote-publishing test, each on a free port, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
TOOLS = Path(os.environ.get("REVSHARE_TOOLS_DIR", REPO / "var" / "tools"))
AZURITE = TOOLS / "node" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account and key (learn.microsoft.com): not a secret.
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def serve(name: str, argv: list[str], probe: str, log: Path) -> Iterator[None]:
    """Start ``argv`` in its own process group, wait until ``probe`` answers any HTTP status."""
    exe = Path(argv[0])
    if not os.access(exe, os.X_OK):
        pytest.fail(f"{name} not found at {exe}: run `make tools` (and `make install`)")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited: {log.read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(probe, timeout=2)
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"{name} did not answer within 60 s")
                    time.sleep(0.1)
            yield
        finally:
            _stop(proc)


def moto(port: int, tmp: Path):
    return serve("moto_server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                 f"http://127.0.0.1:{port}/", tmp / "moto.log")  # fmt: skip


def gcs(port: int, tmp: Path):
    argv = [str(BIN / "gcp-storage-emulator"), "start", "-H", "127.0.0.1", "--port", str(port),
            "--in-memory", "-q"]  # fmt: skip
    return serve("gcp-storage-emulator", argv, f"http://127.0.0.1:{port}/", tmp / "gcs.log")


def azurite(port: int, tmp: Path):
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--location", str(tmp / "azurite"), "--disableTelemetry",
            "--skipApiVersionCheck"]  # fmt: skip
    return serve("Azurite", argv, f"http://127.0.0.1:{port}/{AZ_ACCOUNT}?comp=list",
                 tmp / "azurite.log")  # fmt: skip


def azure_conn(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZ_ACCOUNT};")  # fmt: skip
