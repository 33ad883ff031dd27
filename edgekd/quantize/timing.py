"""Batch-1 latency of ONNX and OpenVINO models on this CPU, each paired round by round with a reference.

The models are opened with the bench's own settings (:func:`resolve_ort_options`,
:func:`compile_config`) through the runtime openers, fed the way the bench feeds them
(:func:`ort_runner`, :func:`ov_request_runner`) and timed by THE timing loop's paired rounds
(:func:`edgekd.runtime.timing.paired_ms`), so a quantizer's "INT8 is faster" verdict and the
bench's latency come from the same code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np

from edgekd.backends.base import SessionOptions
from edgekd.runtime.timing import paired_ms

__all__ = [
    "TIMING_PER_ROUND",
    "TIMING_ROUNDS",
    "openvino_call",
    "ort_call",
    "paired_ms",
    "time_batch1",
    "time_openvino_batch1",
]

TIMING_ROUNDS, TIMING_PER_ROUND = 20, 15  # 300 timed runs per model, interleaved in short rounds


def ort_call(path: str | os.PathLike[str], frame: np.ndarray, threads: int) -> Callable[[], object]:
    """One ONNX model's call on ``frame`` for :func:`paired_ms`, opened as the bench opens
    onnxruntime/* (sequential, all optimizations, ``threads`` intra-op threads)."""
    from edgekd.backends.onnxruntime_backend import resolve_ort_options
    from edgekd.runtime.onnxruntime_open import open_ort, ort_runner

    session = open_ort(path, resolve_ort_options(SessionOptions(threads=threads)))
    run, _shape = ort_runner(session, os.fspath(path))
    return functools.partial(run, frame)


def openvino_call(path: str | os.PathLike[str], frame: np.ndarray, threads: int) -> Callable[[], object]:
    """One OpenVINO model's call on ``frame`` for :func:`paired_ms`, compiled as the bench compiles
    openvino/int8 (latency hint, one stream, f32 hint: quantized layers still run INT8)."""
    from edgekd.backends.openvino_backend import compile_config
    from edgekd.runtime.openvino_open import OvSettings, compile_ov, ov_request_runner

    config = compile_config("CPU", SessionOptions(threads=threads, precision="int8"))
    compiled = compile_ov(path, OvSettings("CPU", config))
    return functools.partial(ov_request_runner(compiled.create_infer_request()), frame)


def _batch1_timer(make_call: Callable[..., Callable[[], object]], name: str, doc: str):
    """A ``name(models, frame, threads, rounds, per_round) -> {model: ms}`` timing each model's
    call (made by ``make_call(path, frame, threads)``) in paired rounds with the first."""

    def time_models(
        models: dict[str, str | os.PathLike[str]],
        frame: np.ndarray,
        threads: int,
        rounds: int = TIMING_ROUNDS,
        per_round: int = TIMING_PER_ROUND,
    ) -> dict[str, float]:
        calls = {model: make_call(path, frame, threads) for model, path in models.items()}
        return paired_ms(calls, rounds, per_round)

    time_models.__name__ = time_models.__qualname__ = name
    time_models.__doc__ = doc
    return time_models


time_batch1 = _batch1_timer(
    ort_call,
    "time_batch1",
    """Latency in ms of each ONNX model on ``frame`` (``[1, ...]``), single stream, CPU,
    ``threads`` intra-op threads, paired with the first model (the reference, FP32) as
    :func:`paired_ms` describes.""",
)
time_openvino_batch1 = _batch1_timer(
    openvino_call,
    "time_openvino_batch1",
    """Latency in ms of each OpenVINO model (CPU plugin, as the bench compiles it) on ``frame``
    ``[1, ...]``, one infer request each, paired like ``time_batch1``.""",
)
