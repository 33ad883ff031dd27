"""A static gate loads the model in the runtime its target names: a file no runtime can load,
one that does not fit the target's input_shape, or one of another precision never passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.backends.base import BACKENDS
from edgekd.cli.main import cli
from tests.backends.tiny_models import TinyArtifacts
from tests.bench.onnx_makers import linear_classifier


def _target(tmp_path: Path, runtime: str = "onnxruntime", precision: str = "fp32", extra: str = "") -> Path:
    path = tmp_path / f"{runtime}-{precision}.yaml"
    path.write_text(
        f"name: t\nruntime: {runtime}\nprecision: {precision}\ninput_shape: [1, 2, 128]\n{extra}"
        "budgets: {max_size_bytes: 100000000}\n"
    )
    return path


def _gate(model: Path, target: Path) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["gate", str(model), "--target", str(target)])
    return res.exit_code, res.stderr + res.stdout


def _assert_refused(code: int, output: str, model: Path, fragment: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert model.name in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in output


def test_a_loadable_model_passes(tmp_path: Path) -> None:
    model = linear_classifier(tmp_path / "ok.onnx")
    for runtime in ("onnxruntime", "openvino"):
        code, output = _gate(model, _target(tmp_path, runtime))
        assert code == 0, output


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("unknown_domain.onnx", {"extra_domain": "com.example.nowhere"}), ("opset99.onnx", {"opset": 99})],
)
def test_a_model_the_runtime_cannot_load_fails(tmp_path: Path, runtime: str, name: str, kwargs: dict) -> None:
    model = linear_classifier(tmp_path / name, **kwargs)
    code, output = _gate(model, _target(tmp_path, runtime))
    _assert_refused(code, output, model, "")


def test_corrupt_file_fails_in_each_runtime(tmp_path: Path) -> None:
    model = tmp_path / "garbage.onnx"
    model.write_bytes(b"\x08\x07garbage, not a protobuf")
    for runtime in ("onnxruntime", "openvino"):
        code, output = _gate(model, _target(tmp_path, runtime))
        _assert_refused(code, output, model, "")


def test_the_targets_input_shape_is_compared(tmp_path: Path) -> None:
    model = linear_classifier(tmp_path / "frames_3x32.onnx", frame=(3, 32))
    code, output = _gate(model, _target(tmp_path))
    _assert_refused(code, output, model, "[1, 2, 128]")
    batch4 = linear_classifier(tmp_path / "batch4.onnx", batch=4)
    code, output = _gate(batch4, _target(tmp_path))
    _assert_refused(code, output, batch4, "batch 4")


def test_precision_must_match_the_target(tmp_path: Path, tiny: TinyArtifacts) -> None:
    code, output = _gate(tiny.onnx, _target(tmp_path, precision="int8"))
    _assert_refused(code, output, tiny.onnx, "not INT8")
    code, output = _gate(tiny.onnx_int8, _target(tmp_path, precision="fp32"))
    _assert_refused(code, output, tiny.onnx_int8, "an INT8 model")
    code, output = _gate(tiny.onnx_int8, _target(tmp_path, precision="int8"))
    assert code == 0, output


def test_a_file_the_runtime_does_not_read_is_refused(tmp_path: Path, tiny: TinyArtifacts) -> None:
    code, output = _gate(tiny.xml, _target(tmp_path, "onnxruntime"))
    _assert_refused(code, output, tiny.xml, "does not load")


def test_tensorrt_absent_is_runtime_unavailable_not_a_pass(tmp_path: Path) -> None:
    if BACKENDS.get("tensorrt").unavailable_reason() is None:
        pytest.skip("TensorRT runs here: the absent case cannot be shown")
    model = linear_classifier(tmp_path / "model.onnx")
    target = tmp_path / "trt.yaml"
    target.write_text(
        "name: trt\nruntime: tensorrt\nprecision: fp16\ndevice: GPU\nbudgets: {max_size_bytes: 1}\n"
    )
    code, output = _gate(model, target)
    _assert_refused(code, output, model, "tensorrt")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_fail_the_static_gate(tmp_path: Path, value: float) -> None:
    import openvino as ov

    model = linear_classifier(tmp_path / "bad_weights.onnx", weight=value)
    code, output = _gate(model, _target(tmp_path))
    _assert_refused(code, output, model, "NaN or Inf")
    xml = tmp_path / "bad_weights.xml"
    ov.save_model(ov.convert_model(str(model)), str(xml), compress_to_fp16=False)
    code, output = _gate(xml, _target(tmp_path, "openvino"))
    _assert_refused(code, output, xml, "NaN or Inf")
