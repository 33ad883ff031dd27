"""Fingerprint of the machine a bench ran on, so numbers are never compared blind.

The CPU part is :func:`edgekd.remote.device_runner.cpu_fingerprint`, the same code a
remote device reports with.
"""

from __future__ import annotations

import platform
from typing import Any

from edgekd.artifacts import library_versions
from edgekd.remote.device_runner import ISA_FLAGS, cpu_fingerprint

__all__ = ["ISA_FLAGS", "cpu_fingerprint", "fingerprint"]


def fingerprint() -> dict[str, Any]:
    """Everything a reader needs to judge whether two bench results are comparable.

    >>> fingerprint()["cpu"]["isa"]["avx2"]
    True
    """
    return {
        "cpu": cpu_fingerprint(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
