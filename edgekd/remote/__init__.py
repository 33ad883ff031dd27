"""Benchmarks on a device reached over SSH: an executor the bench takes.

``run_bench(..., executor=executor_for("ssh://user@device"))`` (see
:mod:`edgekd.remote.executor`) ships the models, the frames and the runtime package
(:mod:`edgekd.runtime`) to the device, runs its device runner there and returns the same
bench document as a local bench. :mod:`edgekd.remote.ssh` is the transport (system
``ssh``/``scp``, strict host keys). ``edgekd.bench`` and ``edgekd.backends`` import nothing
from here.

This package imports nothing at import time, so ``edgekd.remote.ssh`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HostKeyError",
    "RemoteError",
    "SshExecutor",
    "SshOptions",
    "executor_for",
    "parse_ssh_url",
    "run_remote_bench",
]


def __getattr__(name: str) -> Any:
    if name in ("SshExecutor", "executor_for", "run_remote_bench"):
        from edgekd.remote import executor

        return getattr(executor, name)
    if name in ("HostKeyError", "RemoteError", "SshOptions", "parse_ssh_url"):
        from edgekd.remote import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module 'edgekd.remote' has no attribute {name!r}")
