"""Target-profile runtime settings reach the real runtimes; absent providers are skipped."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edgekd.backends.base import SessionOptions, session_from_artifact
from edgekd.backends.profile_options import (
    OpenVinoProfile,
    OrtProfile,
    options_for_entry,
    options_from_target,
    resolve_threads,
)
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, BenchFailed, run_bench
from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.targets import TargetProfile, load_target
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts


def _target(runtime: str, **sections) -> TargetProfile:
    return TargetProfile(name="t", runtime=runtime, threads=1, sections=sections)


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
    candidates = [BenchCandidate("onnxruntime", "fp32", tiny.onnx, options=SessionOptions(device=device))]
    # A bench in which nothing ran is not a success, unless asked to record it.
    with pytest.raises(BenchFailed, match=provider):
        run_bench(
            candidates, dataset, BenchConfig(latency=fast, roofline=False), name="gpu", out_dir=tmp_path
        )
    cfg = BenchConfig(latency=fast, roofline=False, keep_going=True)
    doc = run_bench(candidates, dataset, cfg, name="gpu", out_dir=tmp_path)
    entry = doc["entries"][0]
    assert entry["status"] == "skipped" and provider in entry["reason"]


def test_unknown_ort_device_is_a_config_error(tiny: TinyArtifacts) -> None:
    with pytest.raises(ConfigError, match="no device 'TPU'"):
        session_from_artifact("onnxruntime", tiny.onnx, dataclasses.replace(SessionOptions(), device="TPU"))


def test_target_sections_load_strictly_from_yaml(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: g\nruntime: openvino\nopenvino: {performance_hint: THROUGHPUT, num_streams: 2}\n"
        "onnxruntime: {graph_optimization_level: basic}\n"
    )
    target = load_target(good)
    assert target.section("openvino") == OpenVinoProfile(performance_hint="THROUGHPUT", num_streams=2)
    assert target.section("onnxruntime") == OrtProfile(graph_optimization_level="basic")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nruntime: onnxruntime\nonnxruntime: {execution_mod: parallel}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*execution_mod") as info:
        load_target(bad)
    assert "execution_mode" in str(info.value.hint)  # did you mean
    zero = tmp_path / "zero.yaml"
    zero.write_text("name: z\nruntime: openvino\nopenvino: {num_streams: 0}\n")
    with pytest.raises(ConfigError, match="num_streams"):
        load_target(zero)


def test_entry_options_take_each_runtime_section_and_the_device_of_the_targets_own_runtime() -> None:
    target = TargetProfile(
        name="t",
        runtime="openvino",
        device="GPU",
        threads=3,
        sections={
            "onnxruntime": OrtProfile(graph_optimization_level="basic"),
            "openvino": OpenVinoProfile(performance_hint="THROUGHPUT", num_streams=2),
        },
    )
    ov = options_for_entry(target, "openvino", "int8")
    assert (ov.device, ov.precision, ov.threads) == ("GPU", "int8", 3)
    assert ov.extra == {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2"}
    ort_opts = options_for_entry(target, "onnxruntime", "fp32", threads=1)
    # An OpenVINO device name means nothing to ONNX Runtime: its entries stay on the CPU.
    assert (ort_opts.device, ort_opts.threads) == ("CPU", 1)
    assert ort_opts.extra == {"execution_mode": "sequential", "graph_optimization_level": "basic"}
    assert options_for_entry(target, "torch", "fp32").extra == {}
    assert options_for_entry(None, "onnxruntime", "fp32", 2) == SessionOptions(threads=2, precision="fp32")


@pytest.mark.parametrize(
    "name", ["x86-cpu-onnxruntime-int8", "x86-cpu-openvino-fp32", "raspberry-pi5-onnxruntime-int8"]
)
def test_shipped_cpu_targets_carry_their_runtime_section(name: str) -> None:
    target = load_target(name)
    section = target.section(target.runtime)
    assert section is not None, f"{name} should say how {target.runtime} is tuned"
    assert options_from_target(target).extra == section.extra()


def test_torch_compile_from_the_target_matches_eager(tiny: TinyArtifacts) -> None:
    """torch.compile (inductor, on this CPU) gives the eager logits; the first call compiles."""
    from edgekd.backends.profile_options import TorchProfile
    from edgekd.backends.torch_backend import session_from_module

    target = _target("torch", torch=TorchProfile(compile="default"))
    options = options_from_target(target)
    assert options.extra == {"compile": "default"}
    compiled = session_from_module(tiny.module, (2, 128), options)
    eager = session_from_module(tiny.module, (2, 128), SessionOptions(threads=1))
    np.testing.assert_allclose(compiled.run(tiny.frames), eager.run(tiny.frames), atol=1e-5)
    assert compiled._call is not compiled._module and eager._call is eager._module


def test_torch_backend_settings_fail_early_in_one_line(tiny: TinyArtifacts, tmp_path: Path) -> None:
    from edgekd.backends.torch_backend import session_from_module

    with pytest.raises(ConfigError, match="compile mode 'fastest'"):
        session_from_module(tiny.module, (2, 128), SessionOptions(extra={"compile": "fastest"}))
    with pytest.raises(ConfigError, match="no device 'NPU'"):
        session_from_module(tiny.module, (2, 128), SessionOptions(device="NPU"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="no CUDA GPU"):
            session_from_module(tiny.module, (2, 128), SessionOptions(device="CUDA"))


def test_one_thread_rule_cli_over_target_over_default() -> None:
    target = _target("onnxruntime")
    target.threads = 3
    assert resolve_threads(2, target) == 2  # --threads wins
    assert resolve_threads(None, target) == 3  # then the profile
    assert resolve_threads(None, None) is None  # then the runtime's default
    # Every path that opens a session for a target takes the same answer.
    assert options_from_target(target, threads=2).threads == 2
    assert options_for_entry(target, "onnxruntime", "fp32", threads=2).threads == 2
    assert options_for_entry(target, "openvino", "fp32", threads=2).threads == 2
    assert options_for_entry(target, "openvino", "fp32").threads == 3


@pytest.mark.parametrize("bad", [0, -1, 5000])
def test_threads_are_validated_once_with_their_source(bad: int) -> None:
    with pytest.raises(ConfigError, match=f"--threads must be in 1..1024, got {bad}"):
        resolve_threads(bad, None)
    target = _target("onnxruntime")
    target.threads = bad
    with pytest.raises(ConfigError, match=f"^threads must be in 1..1024, got {bad}"):
        resolve_threads(None, target)


def test_profile_sections_follow_the_backend_registry() -> None:
    from edgekd.backends.base import BACKENDS
    from edgekd.backends.profile_options import TorchProfile

    assert BACKENDS.get("onnxruntime").profile_section is OrtProfile
    assert BACKENDS.get("openvino").profile_section is OpenVinoProfile
    assert BACKENDS.get("torch").profile_section is TorchProfile
    assert BACKENDS.get("tensorrt").profile_section is None
