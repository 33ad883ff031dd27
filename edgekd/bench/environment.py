"""Fingerprint of the machine a bench ran on, so numbers are never compared blind.

The fingerprint is :func:`edgekd.runtime.machine.machine_fingerprint`, the same code a
remote device reports with; here the libraries are edgekd's full list.
"""

from __future__ import annotations

from typing import Any

from edgekd.artifacts import library_versions
from edgekd.runtime.machine import ISA_FLAGS, cpu_fingerprint, machine_fingerprint

__all__ = ["ISA_FLAGS", "cpu_fingerprint", "fingerprint"]


def fingerprint() -> dict[str, Any]:
    """Everything a reader needs to judge whether two bench results are comparable.

    >>> fingerprint()["cpu"]["isa"]["avx2"]
    True
    """
    return machine_fingerprint(library_versions())
