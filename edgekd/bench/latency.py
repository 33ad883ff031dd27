"""The one latency loop every backend is timed with, and its statistics.

Each ``Session.run`` call is timed on its own with ``time.perf_counter_ns`` (so the
numbers include the session's input check and output copy, as an application would
see them). Warm-up runs first and is not counted, except the very first call, which
is reported separately as ``first_inference_ms`` (lazy allocation, kernel selection).
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekd.errors import ConfigError, ShapeError

#: A run is flagged noisy when its coefficient of variation exceeds this ...
NOISY_CV = 0.15
#: ... or when its p99 exceeds this multiple of its p50 (a heavy tail: preemption, throttling).
NOISY_TAIL = 3.0


@dataclasses.dataclass
class LatencyConfig:
    """How long to warm up and to measure.

    Warm-up lasts until both ``warmup_runs`` and ``warmup_seconds`` are reached; the
    measurement until both ``min_runs`` and ``min_seconds`` are reached. Each phase is
    cut at ``max_seconds`` (seconds of wall time) so a slow model cannot stall a bench.
    ``batch_size`` is the batch of each timed call.
    """

    warmup_runs: int = 20
    warmup_seconds: float = 0.3
    min_runs: int = 200
    min_seconds: float = 1.0
    max_seconds: float = 20.0
    batch_size: int = 1

    def validate(self) -> None:
        checks = [
            (self.warmup_runs >= 0, "latency.warmup_runs must be >= 0"),
            (self.warmup_seconds >= 0, "latency.warmup_seconds must be >= 0"),
            (self.min_runs >= 1, "latency.min_runs must be >= 1"),
            (self.min_seconds >= 0, "latency.min_seconds must be >= 0"),
            (self.max_seconds > 0, "latency.max_seconds must be > 0"),
            (self.max_seconds >= self.min_seconds, "latency.max_seconds must be >= latency.min_seconds"),
            (self.batch_size >= 1, "latency.batch_size must be >= 1"),
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def latency_stats(
    samples_ns: np.ndarray | list[int], *, batch_size: int = 1, first_inference_ns: int = 0
) -> LatencyStats:
    """Statistics of per-call times given in nanoseconds (a pure function: easy to test)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
    mean = float(ms.mean())
    std = float(ms.std())
    cv = std / mean if mean > 0 else 0.0
    return LatencyStats(
        runs=int(ms.size),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        mean=mean,
        std=std,
        cv=cv,
        min=float(ms.min()),
        max=float(ms.max()),
        first_inference_ms=first_inference_ns / 1e6,
        throughput_per_s=batch_size / (mean / 1e3) if mean > 0 else 0.0,
        noisy=bool(cv > NOISY_CV or p99 > NOISY_TAIL * p50),
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
    max_ns = int(cfg.max_seconds * 1e9)

    start = clock()
    session.run(sample)
    first_ns = clock() - start
    done = 1  # the first call counts as warm-up too
    while (done < cfg.warmup_runs or clock() - start < cfg.warmup_seconds * 1e9) and clock() - start < max_ns:
        session.run(sample)
        done += 1

    samples: list[int] = []
    min_ns = cfg.min_seconds * 1e9
    # A garbage-collector pass inside a timed call would be charged to the model: pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        begin = clock()
        while True:
            t0 = clock()
            session.run(sample)
            t1 = clock()
            samples.append(t1 - t0)
            elapsed = t1 - begin
            if (len(samples) >= cfg.min_runs and elapsed >= min_ns) or elapsed >= max_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return latency_stats(samples, batch_size=cfg.batch_size, first_inference_ns=first_ns)
