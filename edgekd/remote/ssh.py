"""SSH transport through the system OpenSSH client (``ssh``, ``scp``), never a shell of ours.

Every local command is an argument list for ``subprocess.run``. The remote side runs the
command string through the remote user's shell, so each remote argument is quoted with
``shlex.quote`` (:func:`remote_command`). Host keys are verified strictly
(``StrictHostKeyChecking=yes`` against one known_hosts file): an unknown or changed key
is refused with one line. ``BatchMode=yes`` means no password or passphrase prompt ever
blocks a bench; ``ConnectTimeout`` and ``ServerAlive*`` turn an unreachable device or a
dropped connection into a :class:`RemoteError` within seconds.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from edgekd.errors import ConfigError, EdgeKDError

# user and host as ssh itself would accept them, minus anything that could read as an option.
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]"
_URL = re.compile(rf"^ssh://(?:(?P<user>{_USER})@)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?/?$")
# A remote path we created or will remove: no shell metacharacters, never a bare "/".
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")


class RemoteError(EdgeKDError):
    """The device could not be reached, refused us, or the connection dropped (exit 2)."""


class HostKeyError(RemoteError):
    """The device's host key is unknown or changed: refused, never accepted silently."""


@dataclasses.dataclass(frozen=True)
class SshHost:
    """A device address parsed from ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int = 22

    @property
    def destination(self) -> str:
        """``user@host`` for ssh/scp (IPv6 brackets dropped, as ssh wants them)."""
        host = self.host.strip("[]")
        return f"{self.user}@{host}" if self.user else host

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name ssh records the key under: ``host``, or ``[host]:port`` off port 22."""
        host = self.host.strip("[]")
        return host if self.port == 22 else f"[{host}]:{self.port}"


def parse_ssh_url(url: str) -> SshHost:
    """``ssh://user@device:2222`` -> SshHost; ConfigError (one line) for anything else.

    >>> parse_ssh_url("ssh://pi@192.168.1.7:2222")
    SshHost(host='192.168.1.7', user='pi', port=2222)
    """
    match = _URL.match(url.strip())
    if match is None:
        raise ConfigError(
            f"host {url!r} is not an ssh URL", hint="write ssh://user@host or ssh://user@host:port"
        )
    port = int(match["port"] or 22)
    if not 1 <= port <= 65535:
        raise ConfigError(f"host {url!r} has port {port}; ports are 1..65535")
    return SshHost(host=match["host"], user=match["user"], port=port)


@dataclasses.dataclass
class SshOptions:
    """How to connect.

    ``known_hosts``: the file the device's host key must be in (default ~/.ssh/known_hosts;
    add a key after checking its fingerprint, e.g. with ``ssh-keyscan``). ``identity``: a
    private key file (default: ssh's own choice). ``config_file``: an ssh_config (None = the
    user's own, "none" = none at all). ``connect_timeout_s``: seconds to establish a
    connection; ``alive_interval_s`` x 3: seconds of silence after which a live connection
    counts as dropped.
    """

    known_hosts: Path | None = None
    identity: Path | None = None
    config_file: str | None = None
    connect_timeout_s: int = 10
    alive_interval_s: int = 5

    def validate(self) -> None:
        if self.connect_timeout_s < 1 or self.alive_interval_s < 1:
            raise ConfigError("ssh timeouts must be >= 1 second")
        if self.identity is not None and not Path(self.identity).is_file():
            raise ConfigError(f"ssh identity file {self.identity} does not exist", hint="check the path")


def remote_command(argv: list[str]) -> str:
    """One command string for the remote user's shell, every argument quoted.

    >>> remote_command(["rm", "-rf", "--", "/tmp/a b"])
    "rm -rf -- '/tmp/a b'"
    """
    return shlex.join(argv)


def check_remote_path(path: str) -> str:
    """``path`` if it is an absolute path of plain characters (never "/"); ValueError otherwise."""
    if not _SAFE_PATH.match(path) or "/../" in f"{path}/" or path.rstrip("/") in ("", "/tmp"):
        raise ValueError(f"refusing the remote path {path!r}")
    return path


class SshTransport:
    """Run commands on, copy files to, and clean up on one device."""

    def __init__(self, host: SshHost, options: SshOptions | None = None) -> None:
        self.host = host
        self.options = options or SshOptions()
        self.options.validate()
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise RemoteError(
                    f"the OpenSSH client ({tool}) is not installed here",
                    hint="apt-get install openssh-client",
                )

    @property
    def known_hosts(self) -> Path:
        return Path(self.options.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()

    def _options(self) -> list[str]:
        opts = self.options
        args: list[str] = []
        if opts.config_file is not None:
            args += ["-F", opts.config_file]
        settings = [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            f"UserKnownHostsFile={self.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "UpdateHostKeys=no",
            f"ConnectTimeout={opts.connect_timeout_s}",
            f"ServerAliveInterval={opts.alive_interval_s}",
            "ServerAliveCountMax=3",
            "LogLevel=ERROR",
        ]
        if opts.identity is not None:
            settings += ["IdentitiesOnly=yes", f"IdentityFile={Path(opts.identity).resolve()}"]
        for setting in settings:
            args += ["-o", setting]
        return args

    def run(self, argv: list[str], *, what: str, timeout_s: float) -> str:
        """Run ``argv`` on the device; return its stdout.

        Raises:
            HostKeyError: the host key is unknown or has changed.
            RemoteError: unreachable, login refused, dropped connection, timeout, or the
                command failed (its last stderr line is quoted).
        """
        cmd = ["ssh", *self._options(), "-p", str(self.host.port), "-T", "--", self.host.destination]
        return self._call([*cmd, remote_command(argv)], what=what, timeout_s=timeout_s)

    def upload(self, files: list[Path], remote_dir: str, *, timeout_s: float) -> None:
        """Copy local ``files`` (and folders, recursively) into the existing ``remote_dir`` (names kept)."""
        target = f"{self.host.destination}:{check_remote_path(remote_dir)}/"
        if ":" in self.host.destination.partition("@")[2]:  # an IPv6 address needs brackets here
            user, _, addr = self.host.destination.rpartition("@")
            target = f"{user + '@' if user else ''}[{addr}]:{remote_dir}/"
        cmd = ["scp", "-q", "-B", "-r", *self._options(), "-P", str(self.host.port), "--"]
        self._call(
            [*cmd, *(str(f) for f in files), target], what="copying files to the device", timeout_s=timeout_s
        )

    def make_temp_dir(self, base: str, *, timeout_s: float = 60) -> str:
        """A new private (0700) folder under ``base`` on the device; its absolute path."""
        template = f"{base.rstrip('/')}/edgekd-bench.XXXXXXXXXX"
        out = self.run(["mktemp", "-d", template], what="creating a temporary folder", timeout_s=timeout_s)
        path = out.strip().splitlines()[-1] if out.strip() else ""
        try:
            return check_remote_path(path)
        except ValueError:
            raise RemoteError(f"mktemp on {self.host.url} returned {path!r}, not a folder") from None

    def remove_dir(self, path: str, *, timeout_s: float = 60) -> None:
        """``rm -rf`` the folder on the device (a path we created; checked again here)."""
        self.run(
            ["rm", "-rf", "--", check_remote_path(path)],
            what="removing the temporary folder",
            timeout_s=timeout_s,
        )

    def _call(self, cmd: list[str], *, what: str, timeout_s: float) -> str:
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise RemoteError(
                f"{what} on {self.host.url} did not finish within {timeout_s:.0f} s",
                hint="check the device, or raise the remote timeout",
            ) from None
        if proc.returncode == 0:
            return proc.stdout
        raise self.error(proc.returncode, proc.stderr, what)

    def error(self, returncode: int, stderr: str, what: str) -> RemoteError:
        """The one-line error for a failed ssh/scp call (exit 255 is ssh's own failure)."""
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {returncode}"
        text = "\n".join(lines)
        url, kh = self.host.url, self.known_hosts
        name = self.host.known_hosts_name
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have requested" in text:
            return HostKeyError(
                f"the host key of {url} has CHANGED since it was recorded in {kh}; refusing to connect",
                hint=f"if the device was re-installed, check its new key out of band, then "
                f"ssh-keygen -f {kh} -R '{name}' and add the new one",
            )
        if "host key is known for" in text or "Host key verification failed" in text:
            return HostKeyError(
                f"{url} is not in {kh}; unknown host keys are refused",
                hint=f"check the device's key fingerprint, then ssh-keyscan -p {self.host.port} "
                f"{self.host.host.strip('[]')} >> {kh}",
            )
        if "Permission denied" in text:
            return RemoteError(
                f"{url} refused the login: {last}",
                hint="authorize your public key on the device (ssh-copy-id) or pass an identity file",
            )
        unreachable = (
            "Connection refused",
            "timed out",
            "No route to host",
            "Could not resolve",
            "unreachable",
        )
        if returncode == 255 and any(s in text for s in unreachable) and "closed" not in text:
            return RemoteError(
                f"cannot reach {url}: {last}", hint=f"is the device on, with sshd on port {self.host.port}?"
            )
        if returncode == 255 or any(
            s in text for s in ("Broken pipe", "Connection reset", "closed by", "lost connection")
        ):
            return RemoteError(
                f"the connection to {url} dropped while {what}: {last}",
                hint="check the device and the network, then re-run",
            )
        if returncode == 127:
            return RemoteError(
                f"{what} on {url}: command not found ({last})", hint="install it on the device"
            )
        return RemoteError(f"{what} on {url} failed (exit {returncode}): {last}")
