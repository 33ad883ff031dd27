"""Target-profile runtime settings reach the real runtimes; absent providers are skipped."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edgekd.backends.base import SessionOptions, session_from_artifact
from edgekd.backends.profile_options import OpenVinoProfile, OrtProfile, options_from_target
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, run_bench
from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.targets import TargetProfile
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts


def _target(runtime: str, **sections) -> TargetProfile:
    target = TargetProfile(name="t", runtime=runtime, threads=1)
    for key, value in sections.items():
        setattr(target, key, value)  # the section TargetProfile gains once integrated
    return target


def test_ort_profile_reaches_the_session(tiny: TinyArtifacts) -> None:
    import onnxruntime as ort

    profile = from_dict(OrtProfile, {"execution_mode": "parallel", "graph_optimization_level": "basic"})
    target = _target("onnxruntime", onnxruntime=profile)
    target.threads = 2
    options = options_from_target(target)
    session = session_from_artifact("onnxruntime", tiny.onnx, options)
    applied = session._session.get_session_options()
    assert applied.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert applied.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert applied.intra_op_num_threads == 2 and applied.inter_op_num_threads == 2


def test_openvino_profile_reaches_the_compiled_model(tiny: TinyArtifacts) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable CPU: the plugin caps the streams at 1")
    profile = OpenVinoProfile(performance_hint="THROUGHPUT", num_streams=2)
    target = _target("openvino", openvino=profile)
    target.threads = None  # one thread would cap the plugin at one stream
    options = options_from_target(target)
    session = session_from_artifact("openvino", tiny.xml, options)
    assert str(session._compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert int(session._compiled.get_property("NUM_STREAMS")) == 2


def test_default_profiles_are_latency_settings() -> None:
    assert options_from_target(_target("openvino")).extra == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    assert options_from_target(_target("onnxruntime")).extra == {
        "execution_mode": "sequential",
        "graph_optimization_level": "all",
    }


def test_profile_typos_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sequential"):
        from_dict(OrtProfile, {"execution_mode": "sequental"})
    with pytest.raises(ConfigError, match="num_streams"):
        OpenVinoProfile(num_streams=0).extra()


@pytest.mark.parametrize(
    ("device", "provider"), [("CUDA", "CUDAExecutionProvider"), ("TENSORRT", "TensorrtExecutionProvider")]
)
def test_absent_gpu_providers_are_skipped_with_the_reason(
    tiny: TinyArtifacts, tmp_path: Path, device: str, provider: str
) -> None:
    import onnxruntime as ort

    if provider in ort.get_available_providers():
        pytest.skip(f"{provider} is present here; the absent case cannot be shown")
    with pytest.raises(RuntimeUnavailable, match=provider):
        session_from_artifact("onnxruntime", tiny.onnx, SessionOptions(device=device))
    dataset = ArrayDataset(x=tiny.frames, y=np.arange(16) % NUM_CLASSES, class_names=list("ABCD"))
    fast = LatencyConfig(warmup_runs=1, warmup_seconds=0.0, min_runs=2, min_seconds=0.0)
    doc = run_bench(
        [BenchCandidate("onnxruntime", "fp32", tiny.onnx, options=SessionOptions(device=device))],
        dataset,
        BenchConfig(latency=fast, roofline=False),
        name="gpu",
        out_dir=tmp_path,
    )
    entry = doc["entries"][0]
    assert entry["status"] == "skipped" and provider in entry["reason"]


def test_unknown_ort_device_is_a_config_error(tiny: TinyArtifacts) -> None:
    with pytest.raises(ConfigError, match="no device 'TPU'"):
        session_from_artifact("onnxruntime", tiny.onnx, dataclasses.replace(SessionOptions(), device="TPU"))
