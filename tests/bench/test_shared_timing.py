"""Quantize's speed verdict and the bench use THE timing loop and open models the same way."""

from __future__ import annotations

import pytest

from edgekd.quantize import timing as quantize_timing
from edgekd.runtime import timing
from tests.backends.tiny_models import TinyArtifacts


def test_quantize_timing_is_the_runtime_loop() -> None:
    assert quantize_timing.paired_ms is timing.paired_ms


def test_quantizers_time_with_the_bench_settings(
    tiny: TinyArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.runtime import openvino_open

    seen = []
    real = openvino_open.compile_ov
    monkeypatch.setattr(
        openvino_open,
        "compile_ov",
        lambda model, settings, core=None: seen.append(settings) or real(model, settings),
    )
    timed = quantize_timing.time_openvino_batch1(
        {"fp32": tiny.xml, "again": tiny.xml}, tiny.frames[:1], 1, rounds=2, per_round=2
    )
    assert set(timed) == {"fp32", "again"} and all(ms > 0 for ms in timed.values())
    assert seen[0].config == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": "1",
    }


def test_onnx_models_are_paired_with_the_reference(tiny: TinyArtifacts) -> None:
    timed = quantize_timing.time_batch1(
        {"fp32": tiny.onnx, "int8": tiny.onnx_int8}, tiny.frames[:1], 1, rounds=2, per_round=2
    )
    assert list(timed) == ["fp32", "int8"] and all(ms > 0 for ms in timed.values())
