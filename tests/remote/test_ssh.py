"""The SSH transport's pure parts: URL parsing, remote quoting, path checks, error lines."""

from __future__ import annotations

import shlex

import pytest

from edgekd.errors import ConfigError
from edgekd.remote.ssh import (
    HostKeyError,
    RemoteError,
    SshHost,
    SshOptions,
    SshTransport,
    check_remote_path,
    parse_ssh_url,
    remote_command,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://pi@192.168.1.7:2222", SshHost("192.168.1.7", "pi", 2222)),
        ("ssh://jetson.local", SshHost("jetson.local", None, 22)),
        ("ssh://me@[::1]:2200", SshHost("[::1]", "me", 2200)),
    ],
)
def test_parse_ssh_url(url: str, expected: SshHost) -> None:
    assert parse_ssh_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "pi@host",  # no scheme
        "ssh://-oProxyCommand=touch_x",  # would read as an ssh option
        "ssh://pi@host:99999",
        "ssh://p i@host",
        "ssh://pi@host;rm",
        "ssh://-pi@host",
    ],
)
def test_bad_ssh_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_ssh_url(url)


def test_known_hosts_name_and_destination() -> None:
    assert SshHost("dev", "pi", 22).known_hosts_name == "dev"
    assert SshHost("dev", "pi", 2222).known_hosts_name == "[dev]:2222"
    assert SshHost("[::1]", "me", 22).destination == "me@::1"


def test_remote_command_quotes_every_argument() -> None:
    argv = ["python3", "/tmp/a b/run.py", "$(touch /tmp/pwned)", "x;y", "'q'"]
    command = remote_command(argv)
    assert shlex.split(command) == argv  # what the remote shell will see, word for word
    assert "$(touch" not in command.replace("'$(touch /tmp/pwned)'", "")


@pytest.mark.parametrize("path", ["/", "/tmp", "/tmp/", "relative/x", "/tmp/../etc", "/tmp/$(x)", "/tmp/a b"])
def test_check_remote_path_refuses(path: str) -> None:
    with pytest.raises(ValueError):
        check_remote_path(path)


def test_check_remote_path_accepts_mktemp_output() -> None:
    assert check_remote_path("/tmp/edgekd-bench.AbC123xyz_") == "/tmp/edgekd-bench.AbC123xyz_"


def _transport() -> SshTransport:
    return SshTransport(SshHost("dev", "pi", 2222), SshOptions(known_hosts=None))


@pytest.mark.parametrize(
    ("returncode", "stderr", "kind", "words"),
    [
        (
            255,
            "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.\n",
            HostKeyError,
            "CHANGED",
        ),
        (
            255,
            "No ED25519 host key is known for [dev]:2222 and you have requested strict checking.\n"
            "Host key verification failed.\n",
            HostKeyError,
            "unknown host keys are refused",
        ),
        (255, "pi@dev: Permission denied (publickey).\n", RemoteError, "refused the login"),
        (255, "ssh: connect to host dev port 2222: Connection timed out\n", RemoteError, "cannot reach"),
        (255, "Connection closed by 10.0.0.2 port 2222\n", RemoteError, "dropped"),
        (255, "Timeout, server dev not responding.\n", RemoteError, "dropped"),
        (127, "sh: 1: python3: not found\n", RemoteError, "command not found"),
        (2, "edgekd device runner: ValueError: bad\n", RemoteError, "exit 2"),
    ],
)
def test_error_lines(returncode: int, stderr: str, kind: type, words: str) -> None:
    error = _transport().error(returncode, stderr, "running the bench")
    assert type(error) is kind
    assert words in error.one_line() and "\n" not in error.one_line()


def test_ssh_options_are_strict() -> None:
    args = _transport()._options()
    settings = {
        args[i + 1].split("=")[0]: args[i + 1].split("=", 1)[1] for i, a in enumerate(args) if a == "-o"
    }
    assert settings["StrictHostKeyChecking"] == "yes"
    assert settings["BatchMode"] == "yes"
    assert int(settings["ConnectTimeout"]) > 0
    assert settings["UserKnownHostsFile"].endswith("known_hosts")
