"""THE timing loop: every latency edgekd reports or acts on is measured here.

One inner timed call (:func:`timed_call`, ``perf_counter_ns`` around one call) serves the
bench's call-by-call loop (:func:`time_calls`) and the quantizers' paired rounds
(:func:`paired_ms`); the garbage collector is paused while either times, so a collection is
never charged to a model. Standard library and numpy only: this file also runs on a device.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: A run is flagged noisy when its coefficient of variation exceeds this ...
NOISY_CV = 0.15
#: ... or when its p99 exceeds this multiple of its p50 (a heavy tail: preemption, throttling).
NOISY_TAIL = 3.0
#: Untimed calls of each model before paired rounds start (allocation, kernel choice).
PAIRED_WARMUP = 25


def timed_call(clock: Callable[[], Any], run: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    """``(start, end)`` clock readings around one ``run(*args)``: the one timed interval."""
    start = clock()
    run(*args)
    return start, clock()


class GcPaused:
    """Pause the garbage collector for a block (restored as it was)."""

    def __enter__(self) -> GcPaused:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


def latency_summary(
    samples_ns: Any,
    *,
    batch_size: int = 1,
    first_inference_ns: int = 0,
    runtime_ms: Any = None,
) -> dict[str, Any]:
    """Statistics of per-call times given in nanoseconds; every time in the result is in ms.

    Keys: runs, p50, p90, p95, p99 (linear interpolation), mean, std (population),
    cv = std / mean, min, max, first_inference_ms, throughput_per_s = batch_size / mean
    (frames per second), noisy = cv > NOISY_CV or p99 > NOISY_TAIL * p50, and
    runtime_p50: the median of the runtime's own per-call timings (``runtime_ms``, e.g.
    OpenVINO's ``InferRequest.latency``, what benchmark_app reports), None without them.
    """
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("latency statistics need at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
    mean = float(ms.mean())
    std = float(ms.std())
    cv = std / mean if mean > 0 else 0.0
    return {
        "runs": int(ms.size),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "mean": mean,
        "std": std,
        "cv": cv,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "first_inference_ms": first_inference_ns / 1e6,
        "throughput_per_s": batch_size / (mean / 1e3) if mean > 0 else 0.0,
        "noisy": bool(cv > NOISY_CV or p99 > NOISY_TAIL * p50),
        "runtime_p50": float(np.median(runtime_ms)) if runtime_ms is not None and len(runtime_ms) else None,
    }


def time_calls(
    run: Callable[[Any], Any],
    sample: Any,
    *,
    warmup_runs: int,
    warmup_seconds: float,
    min_runs: int,
    min_seconds: float,
    max_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
    runtime_clock: Callable[[], float] | None = None,
    runtime_times: list[float] | None = None,
) -> tuple[list[int], int]:
    """Time ``run(sample)`` call by call: returns (per-call ns of the timed calls, first call ns).

    ``runtime_clock`` (the runtime's own timing of the last call, ms) is read after each timed
    call, outside the timed interval, into ``runtime_times``.

    The first call is timed alone (lazy allocation, kernel choice) and counts as warm-up.
    Warm-up lasts until both ``warmup_runs`` calls and ``warmup_seconds`` have passed, the
    measurement until both ``min_runs`` calls and ``min_seconds``; each phase stops at
    ``max_seconds``. The garbage collector is paused while timing.
    """
    max_ns = int(max_seconds * 1e9)
    start, end = timed_call(clock, run, sample)
    first_ns = end - start
    done = 1
    while (done < warmup_runs or clock() - start < warmup_seconds * 1e9) and clock() - start < max_ns:
        run(sample)
        done += 1

    samples: list[int] = []
    min_ns = min_seconds * 1e9
    read_runtime = runtime_clock is not None and runtime_times is not None
    with GcPaused():
        begin = clock()
        while True:
            t0, t1 = timed_call(clock, run, sample)
            samples.append(t1 - t0)
            if read_runtime:
                runtime_times.append(runtime_clock())  # type: ignore[union-attr,misc]
            elapsed = t1 - begin
            if (len(samples) >= min_runs and elapsed >= min_ns) or elapsed >= max_ns:
                break
    return samples, first_ns


def paired_ms(
    calls: dict[str, Callable[[], object]],
    rounds: int = 20,
    per_round: int = 15,
    clock: Callable[[], Any] = time.perf_counter_ns,
    clock_per_ms: float = 1e6,
) -> dict[str, float]:
    """Median ms of the first call (the reference) and, for every other call, that median
    scaled by its median per-round ratio to the reference.

    ``clock`` ticks ``clock_per_ms`` times a millisecond (nanoseconds by default). The calls
    run in rounds of ``per_round`` each, in forward order on even rounds and in reverse on odd
    ones (a linear drift cancels over two rounds). A shared VM changes speed by tens of
    percent over seconds; one round lasts a fraction of a second, so each ratio compares the
    models at one speed, which medians pooled over the whole run do not. A speed-up computed
    from the result (reference / other) is the median paired ratio. Pairing does not remove
    contention between the models themselves: with several multi-threaded ONNX Runtime
    sessions in one process, an idle session's spinning workers can take the cores the timed
    one needs (docs/benchmarks.md, two threads on 2 vCPUs).
    """
    names = list(calls)
    for call in calls.values():
        for _ in range(PAIRED_WARMUP):
            call()
    per_round_ms: dict[str, list[float]] = {name: [] for name in names}
    with GcPaused():
        for index in range(rounds):
            for name in names if index % 2 == 0 else names[::-1]:
                call, samples = calls[name], []
                for _ in range(per_round):
                    start, end = timed_call(clock, call)
                    samples.append(end - start)
                per_round_ms[name].append(statistics.median(samples) / clock_per_ms)
    reference = per_round_ms[names[0]]
    reference_ms = statistics.median(reference)
    result = {names[0]: round(reference_ms, 5)}
    for name in names[1:]:
        ratio = statistics.median(mine / ref for mine, ref in zip(per_round_ms[name], reference, strict=True))
        result[name] = round(reference_ms * ratio, 5)
    return result
