"""Start and stop the local servers the cloud tests talk to.

Every server gets a free port, a log file in the test's temp folder, its own process group
(so a server that forks is stopped whole), a bounded wait until it answers, and is stopped
(terminate, then kill) whatever the test does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("REVSHARE_TOOLS_DIR", REPO / "var" / "tools"))


def tool(path: Path) -> Path:
    """A tool the tests need; missing means the machine was not set up (a failure, not a skip)."""
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: run `make tools`")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def serve(
    cmd: list[str],
    ready_url: str,
    workdir: Path,
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` until the context exits; ready when ``ready_url`` gives any HTTP answer."""
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited with {proc.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(ready_url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # an HTTP error is an answer: the server is up
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{cmd[0]} did not answer within {timeout:.0f} s")
                time.sleep(0.1)
        yield proc
    finally:
        stop(proc)
        log.close()


# Azurite's published development account (learn.microsoft.com, "Use Azurite"): not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_connection_string(port: int, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


# Fixtures: a test module imports the ones it uses (`from servers import moto`).
@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    exe = tool(REPO / ".venv" / "bin" / "moto_server")
    with serve(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        f"{url}/moto-api/",
        tmp_path_factory.mktemp("moto"),
    ):
        yield url


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An Azurite blob server with its data in tmp; yields its port."""
    exe = tool(TOOLS / "node" / "node_modules" / ".bin" / "azurite-blob")
    data = tmp_path_factory.mktemp("azurite")
    port = free_port()
    cmd = [
        str(exe),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data / "store"),
        "--disableTelemetry",
        "--skipApiVersionCheck",
    ]
    # Any HTTP answer means it is serving (400/403 without credentials).
    with serve(cmd, f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}?comp=list", data):
        yield port
