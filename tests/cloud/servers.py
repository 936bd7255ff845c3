"""Start and stop the local servers the cloud tests talk to.

Every server gets a free port, a log file in the test's temp folder, its own process group
(so a server that forks is stopped whole), a bounded wait until it answers, and is stopped
(terminate, then kill) whatever the test does.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def _answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an HTTP error is an answer: the server is up
    except OSError:
        return False
    return True


def _answers_ssh(port: int) -> bool:
    """True once something on ``port`` greets with an SSH banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@contextmanager
def serve(
    cmd: list[str],
    ready_url: str | Callable[[], bool],
    workdir: Path,
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` until the context exits; ready when ``ready_url`` gives any HTTP answer
    (or, given a callable, when it returns True)."""
    ready = ready_url if callable(ready_url) else lambda: _answers_http(ready_url)
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
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited with {proc.returncode}; see {log.name}")
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


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator (in memory); yields its URL, for ``STORAGE_EMULATOR_HOST``."""
    exe = tool(REPO / ".venv" / "bin" / "gcp-storage-emulator")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(exe), "start", "-H", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    with serve(cmd, f"{url}/", tmp_path_factory.mktemp("gcs")):
        yield url


# -- SFTP: OpenSSH's sshd -----------------------------------------------------------------------


def openssh_key(path: Path | None = None, passphrase: bytes | None = None) -> tuple[str, str]:
    """A new Ed25519 key pair as (private key in OpenSSH format, public key line); the private
    key is also written to ``path`` (mode 0600) if given."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    enc = ser.BestAvailableEncryption(passphrase) if passphrase else ser.NoEncryption()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, enc).decode()
    public = key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    if path is not None:
        path.touch(mode=0o600)
        path.write_text(private)
    return private, public.decode()


@dataclass(frozen=True)
class SftpEndpoint:
    port: int
    user: str
    #: Where the tests put files; sessions start here (absolute paths work as well).
    root: Path
    #: A known_hosts file holding the server's host key, as ``[127.0.0.1]:PORT``.
    known_hosts: Path

    def uri(self, path: Path | str) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{Path(path).as_posix()}"


@dataclass(frozen=True)
class SftpServer(SftpEndpoint):
    #: The one client key the server accepts (OpenSSH private key text).
    client_key: str
    host_public_key: str


def _sshd() -> Path:
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    pytest.fail("sshd not found: run `make tools` (Debian package openssh-server)")


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """OpenSSH's sshd in the foreground on a free port, SFTP only (``internal-sftp``), key
    authentication for one generated client key, its own generated host key; the login user
    is whoever runs the tests (root in CI). No chroot: it needs every path component owned
    by root and not writable by others, which a temp folder under /tmp is not."""
    exe = _sshd()
    work = tmp_path_factory.mktemp("sshd")
    root = work / "drop"
    root.mkdir()
    _, host_pub = openssh_key(work / "host_key")
    client_key, client_pub = openssh_key()
    (work / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (work / "sshd_config").write_text(
        "\n".join([
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {work / 'host_key'}",
            f"AuthorizedKeysFile {work / 'authorized_keys'}",
            "PidFile none",
            "StrictModes no",  # the temp folder's modes are not sshd's business here
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            f"ForceCommand internal-sftp -d {root}",
            "LogLevel VERBOSE",
        ]) + "\n"
    )  # fmt: skip
    if os.geteuid() == 0:
        # sshd's privilege-separation directory; a fresh machine may not have it yet.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    cmd = [str(exe), "-D", "-e", "-f", str(work / "sshd_config")]
    with serve(cmd, lambda: _answers_ssh(port), work):
        yield SftpServer(port, getpass.getuser(), root, work / "known_hosts", client_key, host_pub)


# -- SFTP with a password: paramiko's own server side -------------------------------------------


@dataclass(frozen=True)
class PasswordSftpServer(SftpEndpoint):
    """Serves ``root`` only, read-only; absolute paths under it, as with sshd above."""

    password: str


def _sftp_folder(root: Path) -> type:
    import paramiko

    def refuse(exc: OSError) -> int:
        return paramiko.SFTPServer.convert_errno(exc.errno)

    class Folder(paramiko.SFTPServerInterface):
        """Read-only SFTP over ``root``: what a partner's drop looks like to our client."""

        def _real(self, path: str) -> Path:
            real = Path(os.path.realpath(path))
            if real != root and root not in real.parents:
                raise PermissionError(13, "outside the served folder")
            return real

        def list_folder(self, path: str) -> list | int:
            try:
                folder = self._real(path)
                out = []
                for name in sorted(os.listdir(folder)):
                    attr = paramiko.SFTPAttributes.from_stat(os.stat(folder / name), name)
                    out.append(attr)
                return out
            except OSError as exc:
                return refuse(exc)

        def stat(self, path: str) -> object:
            try:
                return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
            except OSError as exc:
                return refuse(exc)

        lstat = stat

        def open(self, path: str, flags: int, attr: object) -> object:
            if flags & (os.O_WRONLY | os.O_RDWR):
                return paramiko.SFTP_PERMISSION_DENIED
            try:
                handle = paramiko.SFTPHandle(flags)
                handle.readfile = self._real(path).open("rb")
                return handle
            except OSError as exc:
                return refuse(exc)

    return Folder


@pytest.fixture(scope="module")
def sftp_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordSftpServer]:
    """An SFTP server that takes a password: paramiko's server side (``Transport`` in server
    mode with its ``SFTPServer`` subsystem) in threads of this process, on a free port, with a
    generated host key. OpenSSH's sshd checks passwords against the machine's own accounts,
    which a test must not change."""
    import hmac
    import secrets
    import threading

    import paramiko

    work = tmp_path_factory.mktemp("sftp-password")
    root = Path(os.path.realpath(work / "drop"))
    root.mkdir()
    user, password = "partner", "pw-" + secrets.token_urlsafe(12)
    host_key = paramiko.ECDSAKey.generate()

    class Auth(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "password"

        def check_auth_password(self, username: str, offered: str) -> int:
            ok = username == user and hmac.compare_digest(offered.encode(), password.encode())
            return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

        def check_channel_request(self, kind: str, chanid: int) -> int:
            if kind == "session":
                return paramiko.OPEN_SUCCEEDED
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (work / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n"
    )
    transports: list = []
    folder = _sftp_folder(root)

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # the listener was closed: the module's tests are done
                return
            t = paramiko.Transport(sock)
            t.add_server_key(host_key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, folder)
            t.start_server(server=Auth())
            transports.append(t)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield PasswordSftpServer(port, user, root, work / "known_hosts", password)
    finally:
        listener.close()
        for t in transports:
            t.close()
