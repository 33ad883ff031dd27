"""Fingerprint of the machine a bench ran on, so numbers are never compared blind."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edgekd.artifacts import library_versions

#: CPU flags that change which kernels a runtime can pick (int8 dot products, bf16, AMX).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(text: str) -> tuple[str | None, set[str] | None]:
    """(model name, flags) from the first processor block of /proc/cpuinfo text."""
    model: str | None = None
    flags: set[str] | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and flags is None:  # "Features" on ARM
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return model, flags


def cpu_fingerprint(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """CPU model, logical cores (all and usable by this process) and ISA flags of interest.

    ``isa`` maps each flag of :data:`ISA_FLAGS` to True/False, or is None when the flags
    cannot be read (not Linux).
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo_text = ""
    model, flags = _cpuinfo(cpuinfo_text)
    try:
        usable = len(os.sched_getaffinity(0))  # a container or taskset may allow fewer cores
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "isa": None if flags is None else {flag: flag in flags for flag in ISA_FLAGS},
    }


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
