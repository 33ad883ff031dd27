"""Benchmarks on a device reached over SSH.

``run_remote_bench(host, candidates, dataset, cfg, ...)`` (in :mod:`edgekd.remote.bench`)
ships the models, the frames and :mod:`edgekd.remote.device_runner` to the device, runs
the runner there and returns the same bench document as a local bench.
:mod:`edgekd.remote.ssh` is the transport (system ``ssh``/``scp``, strict host keys).

This package imports nothing at import time: ``edgekd.bench`` imports
``device_runner``'s pure functions through it, and ``remote.bench`` imports ``edgekd.bench``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HostKeyError", "RemoteError", "SshOptions", "parse_ssh_url", "run_remote_bench"]


def __getattr__(name: str) -> Any:
    if name == "run_remote_bench":
        from edgekd.remote.bench import run_remote_bench

        return run_remote_bench
    if name in ("HostKeyError", "RemoteError", "SshOptions", "parse_ssh_url"):
        from edgekd.remote import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module 'edgekd.remote' has no attribute {name!r}")
