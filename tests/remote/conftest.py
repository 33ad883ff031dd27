"""A real OpenSSH server on 127.0.0.1 for the remote-bench tests (no mock transport).

The fixture generates a host key and a client key in a temporary folder, writes an
sshd_config that listens on a free loopback port and trusts only that client key, starts
``/usr/sbin/sshd -D -e -f CONFIG`` and stops it afterwards. Without sshd (Debian:
``apt-get install -y openssh-server openssh-client``) the tests skip, saying so.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.tiny_models import TinyArtifacts, build_tiny_artifacts

SSHD = Path("/usr/sbin/sshd")


@dataclasses.dataclass
class SshServer:
    """A running sshd and what a client needs to reach it."""

    port: int
    user: str
    url: str  # ssh://user@127.0.0.1:port
    known_hosts: Path  # holds the server's real host key
    identity: Path  # client private key, authorized on the server
    root: Path  # folder of keys, config and logs
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on port {port} within {timeout} s")


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekd-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def start_sshd(root: Path) -> SshServer:
    """Start sshd for the current user on a free loopback port; keys and config under ``root``."""
    if not SSHD.is_file():
        pytest.skip(f"{SSHD} is missing: apt-get install -y openssh-server openssh-client")
    if shutil.which("ssh-keygen") is None or shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("the OpenSSH client (ssh, scp, ssh-keygen) is missing: apt-get install -y openssh-client")
    if os.geteuid() == 0:
        # As root, sshd insists on its privilege-separation folder (the Debian package's
        # systemd unit creates it at boot; a container never booted it).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    host_key = keygen(root / "host_ed25519")
    identity = keygen(root / "client_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text(identity.with_suffix(".pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {root / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    known_hosts = root / "known_hosts"
    public = (root / "host_ed25519.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    log = root / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log)
    except RuntimeError:
        process.kill()
        process.wait()
        raise
    user = getpass.getuser()
    return SshServer(
        port=port,
        user=user,
        url=f"ssh://{user}@127.0.0.1:{port}",
        known_hosts=known_hosts,
        identity=identity,
        root=root,
        process=process,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A server of the test's own, which the test may kill."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    return build_tiny_artifacts(tmp_path_factory.mktemp("tiny_remote"))
