"""The measuring core (edgekd.runtime): openers, THE timing loop, usable cores."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekd.runtime.machine import cgroup_cpu_limit, usable_cores
from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort, ort_runner
from edgekd.runtime.openvino_open import OvSettings, compile_ov, ov_predict
from edgekd.runtime.timing import paired_ms, time_calls
from tests.backends.tiny_models import TinyArtifacts


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores of quota: two cores may run
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == expected


def test_usable_cores_is_capped_by_the_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert usable_cores(tmp_path) == 1
    assert 1 <= usable_cores(tmp_path / "absent") <= (len(__import__("os").sched_getaffinity(0)))


def test_ort_settings_round_trip_through_json() -> None:
    settings = OrtSettings(
        providers=("CPUExecutionProvider",),
        execution_mode="parallel",
        intra_op_threads=2,
        config_entries={"session.disable_quant_qdq": "1"},
    )
    assert OrtSettings.from_json(settings.to_json()) == settings
    with pytest.raises(ValueError, match="unknown onnxruntime settings intra_op_num_threads"):
        OrtSettings.from_json({"intra_op_num_threads": 1})
    with pytest.raises(ValueError, match="graph_optimization_level 'all'"):
        OrtSettings(graph_optimization_level="all")
    assert OvSettings.from_json(OvSettings("CPU", {"NUM_STREAMS": 1}).to_json()) == OvSettings(
        "CPU", {"NUM_STREAMS": "1"}
    )


def test_open_ort_takes_a_path_bytes_or_a_model_proto(tiny: TinyArtifacts) -> None:
    outputs = []
    for source in (tiny.onnx, tiny.onnx.read_bytes(), onnx.load(str(tiny.onnx))):
        run, shape = ort_runner(open_ort(source, OrtSettings(intra_op_threads=1)), "tiny")
        outputs.append(run(tiny.frames))
        assert shape == (None, 2, 128)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_an_absent_provider_is_a_lookup_error(tiny: TinyArtifacts) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is present here; the absent case cannot be shown")
    with pytest.raises(LookupError, match="no CUDAExecutionProvider"):
        open_ort(tiny.onnx, OrtSettings(providers=("CUDAExecutionProvider",)))


def test_openvino_is_fed_like_the_bench_and_agrees_with_ort(tiny: TinyArtifacts) -> None:
    compiled = compile_ov(tiny.xml, OvSettings("CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
    ov_out = ov_predict(compiled, tiny.frames, batch_size=5)  # 16 frames: 5, 5, 5 and 1
    run, _shape = ort_runner(open_ort(tiny.onnx), "tiny")
    np.testing.assert_allclose(ov_out, run(tiny.frames), atol=1e-4)


def test_the_timing_loop_pauses_the_garbage_collector() -> None:
    seen: list[bool] = []
    time_calls(
        lambda _x: seen.append(gc.isenabled()),
        None,
        warmup_runs=2,
        warmup_seconds=0.0,
        min_runs=3,
        min_seconds=0.0,
        max_seconds=1.0,
    )
    assert seen[:2] == [True, True] and not any(seen[2:]) and gc.isenabled()
    paired: list[bool] = []
    paired_ms({"a": lambda: paired.append(gc.isenabled())}, rounds=1, per_round=2)
    assert all(paired[:-2]) and not any(paired[-2:]) and gc.isenabled()
