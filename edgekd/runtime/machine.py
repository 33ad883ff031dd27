"""The machine a measurement runs on: CPU fingerprint, usable cores, memory, pinning, roofline.

Standard library and numpy only: this file also runs on a device without edgekd.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Re-exported: the thread policy owns them (it runs before numpy or torch is imported).
from .threads import cgroup_cpu_limit, usable_cores  # noqa: F401

#: CPU flags that change which kernels a runtime can pick (int8 dot products, bf16, AMX).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def parse_cpuinfo(text: str) -> tuple[str | None, set[str] | None]:
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
    """CPU model, logical cores (all, and usable by this process) and the ISA flags of interest.

    ``isa`` maps each flag of :data:`ISA_FLAGS` to True/False, or is None when the flags
    cannot be read (not Linux).
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo_text = ""
    model, flags = parse_cpuinfo(cpuinfo_text)
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "isa": None if flags is None else {flag: flag in flags for flag in ISA_FLAGS},
    }


def library_version(module: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_fingerprint(libraries: dict[str, str | None]) -> dict[str, Any]:
    """Everything a reader needs to judge whether two measurements are comparable."""
    return {
        "cpu": cpu_fingerprint(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_kib() -> int | None:
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Resident-memory high-water mark growth over a block, in MiB.

    On Linux the kernel's high-water mark (VmHWM) is reset at the start by writing "5" to
    /proc/self/clear_refs, so earlier peaks (an import, a previous model) do not hide this
    block's; ``delta_mib`` is then VmHWM at the end minus VmRSS at the start. Where that is
    unavailable, ``ru_maxrss`` growth is used (0 when an earlier peak was higher). None when
    neither can be read (not Linux/macOS).
    """

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):  # not Linux, or a kernel without clear_refs
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        self._rss = _status_kib("VmRSS")
        self._maxrss = _maxrss_kib()
        self.delta_mib: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM")
        if hwm is not None and self._rss is not None:
            self.delta_mib = max(0, hwm - self._rss) / 1024
        elif self._maxrss is not None:
            end = _maxrss_kib()
            self.delta_mib = None if end is None else max(0, end - self._maxrss) / 1024


class PinnedCpus:
    """Restrict this process to ``cpus`` (logical CPU ids) for a block, then restore.

    ``cpus`` None or empty: no change. Raises ValueError naming the CPUs when the OS refuses.
    """

    def __init__(self, cpus: list[int] | None) -> None:
        self.cpus = sorted(set(cpus or []))
        self._old: set[int] | None = None

    def __enter__(self) -> PinnedCpus:
        if self.cpus:
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("thread pinning needs os.sched_setaffinity (Linux)")
            self._old = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, self.cpus)
            except OSError as exc:
                raise ValueError(f"cannot pin to CPUs {self.cpus}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            os.sched_setaffinity(0, self._old)


def gemm_peak(n: int = 1024, repeats: int = 5) -> dict[str, Any]:
    """The machine's float32 matrix-multiply peak: median GFLOP/s of ``repeats`` n x n GEMMs.

    One GEMM is 2 n^3 floating-point operations, run by numpy's BLAS on every core this
    process may use. Returns ``{"peak_gflops", "gemm_n", "repeats", "gemm_ms"}``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: BLAS thread pool start, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter_ns() - t0)
    median_ns = float(np.median(times))
    return {
        "peak_gflops": 2.0 * n**3 / median_ns,  # flop per ns == GFLOP/s
        "gemm_n": n,
        "repeats": repeats,
        "gemm_ms": median_ns / 1e6,
    }


def roofline_fields(macs: int | None, batch_size: int, p50_ms: float, peak_gflops: float | None) -> dict:
    """``achieved_gflops`` = 2 x MACs x batch / p50 and ``fraction_of_peak``; None when unknown."""
    if not macs or p50_ms <= 0:
        return {"achieved_gflops": None, "fraction_of_peak": None}
    achieved = 2.0 * macs * batch_size / (p50_ms * 1e6)  # flop per ns
    return {
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak_gflops if peak_gflops else None,
    }
