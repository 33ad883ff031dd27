"""The one latency loop every backend is timed with, and its statistics.

The loop and the statistics are implemented once, in :mod:`edgekd.runtime.timing`
(numpy only, so the same file runs on a remote device); this module adds the typed config
and result. Each ``Session.run`` call is timed on its own with ``time.perf_counter_ns`` (so the
numbers include the session's input check and output copy, as an application would
see them). Warm-up runs first and is not counted, except the very first call, which
is reported separately as ``first_inference_ms`` (lazy allocation, kernel selection).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekd.errors import ConfigError, ShapeError
from edgekd.runtime.timing import NOISY_CV, NOISY_TAIL, latency_summary, time_calls

__all__ = ["NOISY_CV", "NOISY_TAIL", "LatencyConfig", "LatencyStats", "latency_stats", "measure_latency"]


@dataclasses.dataclass
class LatencyConfig:
    """How long to warm up and to measure.

    Warm-up lasts until both ``warmup_runs`` and ``warmup_seconds`` are reached; the
    measurement until both ``min_runs`` and ``min_seconds`` are reached. Each phase is
    cut at ``max_seconds`` (seconds of wall time) so a slow model cannot stall a bench.
    ``batch_size`` is the batch of each timed call. ``pin_cpus`` (logical CPU ids) restricts
    the bench process to those CPUs while it runs (``os.sched_setaffinity``; Linux), so a
    measurement is not moved between cores or shared with another job's cores. A runtime
    first initialised while pinned may keep seeing only those CPUs (OpenVINO's Core does).
    """

    warmup_runs: int = 20
    warmup_seconds: float = 0.3
    min_runs: int = 200
    min_seconds: float = 1.0
    max_seconds: float = 20.0
    batch_size: int = 1
    pin_cpus: list[int] | None = None

    def validate(self) -> None:
        checks = [
            (self.warmup_runs >= 0, "latency.warmup_runs must be >= 0"),
            (self.warmup_seconds >= 0, "latency.warmup_seconds must be >= 0"),
            (self.min_runs >= 1, "latency.min_runs must be >= 1"),
            (self.min_seconds >= 0, "latency.min_seconds must be >= 0"),
            (self.max_seconds > 0, "latency.max_seconds must be > 0"),
            (self.max_seconds >= self.min_seconds, "latency.max_seconds must be >= latency.min_seconds"),
            (self.batch_size >= 1, "latency.batch_size must be >= 1"),
            (all(c >= 0 for c in self.pin_cpus or []), "latency.pin_cpus must list CPU ids >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message, hint="see the bench section of the config reference")


@dataclasses.dataclass
class LatencyStats:
    """Per-call latency statistics; every time is in milliseconds.

    ``std`` is the population standard deviation, ``cv = std / mean``. Percentiles use
    linear interpolation (numpy's default). ``throughput_per_s`` is samples per second:
    ``batch_size / mean``. ``noisy`` is True when ``cv > 0.15`` or ``p99 > 3 * p50``:
    either the spread or the tail is too large for the p50 to be trusted alone.
    ``runtime_p50`` is the median of the runtime's own per-call timing where it has one
    (OpenVINO's ``InferRequest.latency``, the figure benchmark_app reports): the part of
    ``p50`` spent inside the runtime, without the Python call around it. None elsewhere.
    """

    runs: int
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    cv: float
    min: float
    max: float
    first_inference_ms: float
    throughput_per_s: float
    noisy: bool
    runtime_p50: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def latency_stats(
    samples_ns: np.ndarray | list[int],
    *,
    batch_size: int = 1,
    first_inference_ns: int = 0,
    runtime_ms: list[float] | None = None,
) -> LatencyStats:
    """Statistics of per-call times given in nanoseconds (a pure function: easy to test).

    Computed by :func:`edgekd.runtime.timing.latency_summary`, the same code a
    remote device runs, so local and remote statistics cannot drift apart.
    """
    return LatencyStats(
        **latency_summary(
            samples_ns, batch_size=batch_size, first_inference_ns=first_inference_ns, runtime_ms=runtime_ms
        )
    )


def measure_latency(
    session: Any,
    sample: np.ndarray,
    cfg: LatencyConfig | None = None,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> LatencyStats:
    """Time ``session.run(sample)`` call by call.

    Args:
        session: anything with ``run(x) -> np.ndarray`` (a :class:`edgekd.backends.Session`).
        sample: the input batch, float32 ``[cfg.batch_size, *sample_shape]``; use real frames,
            not zeros (some kernels take shortcuts on zeros).
        cfg: warm-up and measurement lengths.
        clock: nanosecond clock; tests pass a fake one.

    Returns:
        LatencyStats in milliseconds.
    """
    cfg = cfg or LatencyConfig()
    cfg.validate()
    if sample.ndim == 0 or sample.shape[0] != cfg.batch_size:
        raise ShapeError(
            f"latency sample has shape {list(sample.shape)}; expected batch {cfg.batch_size} first",
            hint="stack latency.batch_size frames",
        )
    runtime_clock = getattr(session, "runtime_ms", None)
    runtime_times: list[float] = []
    samples, first_ns = time_calls(
        session.run,
        sample,
        warmup_runs=cfg.warmup_runs,
        warmup_seconds=cfg.warmup_seconds,
        min_runs=cfg.min_runs,
        min_seconds=cfg.min_seconds,
        max_seconds=cfg.max_seconds,
        clock=clock,
        runtime_clock=runtime_clock,
        runtime_times=runtime_times,
    )
    return latency_stats(
        samples, batch_size=cfg.batch_size, first_inference_ns=first_ns, runtime_ms=runtime_times or None
    )
