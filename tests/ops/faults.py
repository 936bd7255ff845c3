"""Fault injection for the operations tests: a moto S3 server the test can stop and start
again on the same port, and a TCP proxy in front of it that can answer slowly or cut a
response after N bytes. boto3 (the official client) talks HTTP through the proxy to the real
server; nothing is patched in process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3

from tests.cloud.servers import REPO, free_port, stop, tool


class MotoServer:
    """moto's S3 server on a fixed port, stoppable and restartable (its state is in memory:
    a restart is an empty server, as after a real outage the test uploads again)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        exe = tool(REPO / ".venv" / "bin" / "moto_server")
        log = (self.workdir / f"moto-{time.monotonic_ns()}.log").open("wb")
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start on {self.port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def upload(self, root: Path, bucket: str, prefix: str) -> int:
        """Create ``bucket`` and upload every file under ``root`` to ``prefix/<relpath>``."""
        s3 = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket=bucket)
        n = 0
        for f in sorted(root.rglob("*")):
            if f.is_file():
                s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(root).as_posix()}")
                n += 1
        return n


class FaultProxy:
    """A TCP proxy to ``127.0.0.1:upstream``. Modes: ``up`` forwards; ``slow`` holds every
    request ``delay`` seconds before forwarding it; ``cut`` forwards a response to a request
    whose head contains ``needle`` for ``cut_after`` bytes, calls ``on_cut`` (e.g. stop the
    server) and closes the connection. If the upstream refuses, the client's connection is
    closed at once, as a load balancer in front of a dead server does."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "up"
        self.delay = 0.0
        self.needle = b""
        self.cut_after = 0
        self.on_cut: Callable[[], None] | None = None
        self.requests: list[str] = []
        self.cuts = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:
            client.close()
            return
        state = {"cutting": False}
        threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()
        try:
            while data := client.recv(65536):
                head = data.split(b"\r\n", 1)[0]
                if head[:4] in (b"GET ", b"HEAD", b"PUT ", b"POST"):
                    self.requests.append(head.decode("latin-1"))
                    if self.mode == "cut" and self.needle in head and head.startswith(b"GET "):
                        state["cutting"] = True
                if self.mode == "slow":
                    time.sleep(self.delay)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        sent = 0
        try:
            while data := upstream.recv(65536):
                if state["cutting"]:
                    room = self.cut_after - sent
                    if len(data) >= room:
                        client.sendall(data[:room])
                        self.cuts += 1
                        if self.on_cut is not None:
                            self.on_cut()
                        return
                    sent += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
