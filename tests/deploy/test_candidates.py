"""Which candidates each target gets here, and the reason for every one it does not."""

from __future__ import annotations

import pytest

from edgekd.deploy.candidates import catalogue, openvino_capabilities, plan_candidates
from edgekd.errors import ConfigError
from edgekd.targets import load_target


def _plan(target: str, **kwargs) -> dict[str, str | None]:
    profile = load_target(target)
    kwargs.setdefault("host", profile.host)
    kwargs.setdefault("student_is_onnx", False)
    return {p.id: p.skip_reason for p in plan_candidates(profile, **kwargs)}


def test_x86_cpu_target_plans_every_cpu_runtime_and_says_why_not_the_rest() -> None:
    plan = _plan("x86-cpu-onnxruntime-int8")
    assert list(plan) == [spec.id for spec in catalogue()]
    for cid in (
        "torch/fp32",
        "onnxruntime/fp32",
        "onnxruntime/int8-u8",
        "onnxruntime/int8-s8",
        "openvino/fp32",
        "openvino/int8",
    ):
        assert plan[cid] is None, (cid, plan[cid])
    caps = openvino_capabilities("CPU") or ()
    for precision in ("fp16", "bf16"):
        reason = plan[f"openvino/{precision}"]
        if precision.upper() in caps:
            assert reason is None
        else:  # this CPU does not execute it: skipped with the capabilities read from OpenVINO
            assert reason.startswith(f"not supported here: CPU lacks {precision.upper()}")
            assert "FP32" in reason
    for cid in ("tensorrt/fp16", "tensorrt/int8"):
        assert plan[cid] is not None and "tensorrt" in plan[cid].lower()


def test_gpu_target_over_ssh() -> None:
    plan = _plan("jetson-orin-tensorrt-fp16")
    assert plan["torch/fp32"] == "torch does not run on the target's device GPU"
    assert plan["openvino/fp32"] == "openvino does not run on the target's device GPU"
    assert plan["onnxruntime/fp32"] is None  # measured on the device through the SSH runner
    trt = plan["tensorrt/fp16"]
    assert trt.lower().startswith("runtime not installed: tensorrt") or "SSH device runner" in trt


def test_remote_cpu_target_and_onnx_student() -> None:
    plan = _plan("raspberry-pi5-onnxruntime-int8")
    assert "over SSH" in plan["torch/fp32"]
    assert plan["onnxruntime/int8-s8"] is None
    local = _plan("x86-cpu-onnxruntime-fp32", student_is_onnx=True)
    assert local["torch/fp32"] == "no PyTorch model: the student was given as ONNX"


def test_runtime_restriction_and_missing_runtime() -> None:
    plan = _plan("x86-cpu-openvino-fp32", runtimes=["onnxruntime"])
    assert plan["onnxruntime/fp32"] is None
    assert plan["openvino/fp32"] == "not among the requested runtimes (onnxruntime)"

    def only_ort(backend: str) -> str | None:
        return None if backend == "onnxruntime" else f"{backend} is not installed (test)"

    with pytest.raises(ConfigError, match=r"unknown runtime.*onnxruntim"):
        _plan("x86-cpu-openvino-fp32", runtimes=["onnxruntim"])

    plan = _plan("x86-cpu-openvino-fp32", runtime_reason=only_ort)
    assert plan["openvino/int8"] == "openvino is not installed (test)"
    assert plan["onnxruntime/int8-u8"] is None


def test_catalogue_goes_from_simplest_to_most_complex() -> None:
    specs = catalogue()
    levels = [spec.complexity for spec in specs]
    assert levels == sorted(levels) and levels[0] == 0
    assert len({spec.id for spec in specs}) == len(specs)


def test_device_families_remote_runners_and_recipes_come_from_the_backends() -> None:
    def everything_installed(_backend: str) -> str | None:
        return None

    plan = _plan("cuda-gpu-onnxruntime-fp16", runtime_reason=everything_installed)
    assert plan["onnxruntime/fp32"] is None
    assert plan["torch/fp32"] == "torch does not run on the target's device CUDA"
    assert plan["openvino/int8"] == "openvino does not run on the target's device CUDA"
    # TensorRT runs on a CUDA device, but deploy has no recipe that builds engines: said, not faked.
    assert plan["tensorrt/fp16"].startswith("tensorrt runs here, but deploy does not build tensorrt-engine")
    remote = _plan("jetson-orin-tensorrt-int8", runtime_reason=everything_installed)
    assert remote["tensorrt/int8"] == (
        "tensorrt does not run on a device over SSH (the SSH device runner opens onnxruntime, openvino)"
    )
    assert remote["onnxruntime/int8-u8"] is None
