"""Batch-1 latency of ONNX models on this CPU, interleaved so drift hits every model alike."""

from __future__ import annotations

import os
import statistics
import time

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
    """Median latency in ms of each ONNX model on ``frame`` (``[1, ...]``), single stream, CPU.

    Runs are interleaved round by round so slow drift of a shared CPU (turbo, noisy
    neighbours) hits every model alike instead of whichever happened to run last.
    """
    sessions = {name: ort_session(path, threads=threads) for name, path in models.items()}
    feeds = {name: {s.get_inputs()[0].name: frame} for name, s in sessions.items()}
    for name, session in sessions.items():
        for _ in range(TIMING_WARMUP):
            session.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(per_round):
                start = time.perf_counter()
                session.run(None, feeds[name])
                samples[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(values) * 1e3, 5) for name, values in samples.items()}


def time_openvino_batch1(
    models: dict[str, str | os.PathLike[str]],
    frame: np.ndarray,
    threads: int,
    rounds: int = TIMING_ROUNDS,
    per_round: int = TIMING_PER_ROUND,
) -> dict[str, float]:
    """Median ms of each OpenVINO model (CPU plugin, f32 hint: quantized layers still run INT8)
    on ``frame`` ``[1, ...]``, one infer request each, interleaved like ``time_batch1``."""
    from edgekd.export.openvino_export import compile_cpu

    requests = {
        name: compile_cpu(path, precision="f32", threads=threads).create_infer_request()
        for name, path in models.items()
    }
    for request in requests.values():
        for _ in range(TIMING_WARMUP):
            request.infer([frame])
    samples: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(rounds):
        for name, request in requests.items():
            for _ in range(per_round):
                start = time.perf_counter()
                request.infer([frame])
                samples[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(values) * 1e3, 5) for name, values in samples.items()}
