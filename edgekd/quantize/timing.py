"""Batch-1 latency of ONNX and OpenVINO models on this CPU, each paired round by round with a reference."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from edgekd.export.onnx_export import ort_session

TIMING_WARMUP = 25
TIMING_ROUNDS, TIMING_PER_ROUND = 20, 15  # 300 timed runs per model, interleaved in short rounds


def time_batch1(
    models: dict[str, str | os.PathLike[str]],
    frame: np.ndarray,
    threads: int,
    rounds: int = TIMING_ROUNDS,
    per_round: int = TIMING_PER_ROUND,
) -> dict[str, float]:
    """Latency in ms of each ONNX model on ``frame`` (``[1, ...]``), single stream, CPU,
    paired with the first model (the reference, FP32) as :func:`paired_ms` describes."""
    sessions = {name: ort_session(path, threads=threads) for name, path in models.items()}
    calls = {}
    for name, session in sessions.items():
        feed = {session.get_inputs()[0].name: frame}
        calls[name] = lambda session=session, feed=feed: session.run(None, feed)
    return paired_ms(calls, rounds, per_round)


def time_openvino_batch1(
    models: dict[str, str | os.PathLike[str]],
    frame: np.ndarray,
    threads: int,
    rounds: int = TIMING_ROUNDS,
    per_round: int = TIMING_PER_ROUND,
) -> dict[str, float]:
    """Latency in ms of each OpenVINO model (CPU plugin, f32 hint: quantized layers still run
    INT8) on ``frame`` ``[1, ...]``, one infer request each, paired like ``time_batch1``."""
    from edgekd.export.openvino_export import compile_cpu

    calls = {}
    for name, path in models.items():
        request = compile_cpu(path, precision="f32", threads=threads).create_infer_request()
        calls[name] = lambda request=request: request.infer([frame])
    return paired_ms(calls, rounds, per_round)


def paired_ms(
    calls: dict[str, Callable[[], object]],
    rounds: int = TIMING_ROUNDS,
    per_round: int = TIMING_PER_ROUND,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median ms of the first call (the reference) and, for every other call, that median
    scaled by its median per-round ratio to the reference.

    The calls run in rounds of ``per_round`` each, in forward order on even rounds and in
    reverse on odd ones (a linear drift cancels over two rounds). A shared VM changes speed
    by tens of percent over seconds; one round lasts a fraction of a second, so each ratio
    compares the models at one speed, which medians pooled over the whole run do not. A
    speed-up computed from the result (reference / other) is the median paired ratio.
    Pairing does not remove contention between the models themselves: with several
    multi-threaded ONNX Runtime sessions in one process, an idle session's spinning workers
    can take the cores the timed one needs (docs/benchmarks.md, two threads on 2 vCPUs).
    """
    names = list(calls)
    for call in calls.values():
        for _ in range(TIMING_WARMUP):
            call()
    per_round_ms: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            call, samples = calls[name], []
            for _ in range(per_round):
                start = clock()
                call()
                samples.append(clock() - start)
            per_round_ms[name].append(statistics.median(samples) * 1e3)
    reference = per_round_ms[names[0]]
    reference_ms = statistics.median(reference)
    result = {names[0]: round(reference_ms, 5)}
    for name in names[1:]:
        ratio = statistics.median(mine / ref for mine, ref in zip(per_round_ms[name], reference, strict=True))
        result[name] = round(reference_ms * ratio, 5)
    return result
