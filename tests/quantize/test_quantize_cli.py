"""``edgekd quantize`` through the real CLI (and ORT's pre-processing): models that do not fit
the data, NaN models and graphs ORT's shape inference cannot handle end in one line naming
the user's file, and leave nothing behind - no INT8 model, no temporary file in the cwd."""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset
from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.config import QuantizeError
from edgekd.quantize.ort_build import preprocess
from tests.export.tiny_nets import CLASSES, iq_frames, trained_net

ORT_TEMP = "sym_shape_infer_temp.onnx"  # what ORT's symbolic shape inference leaves in the cwd


def _dataset(path, classes: int = CLASSES, length: int = 128) -> None:
    """48 frames (16 per split) of the tiny nets' tones; ``classes`` only sets the class names."""
    frames, labels = iq_frames(48, seed=7)
    if length != frames.shape[-1]:
        frames = np.ascontiguousarray(frames[..., :length])
    split = np.repeat([0, 1, 2], 16)
    names = [f"c{i}" for i in range(classes)]
    ArrayDataset(x=frames, y=labels % classes, class_names=names, split=split).save_npz(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize-cli")
    export_onnx(trained_net("conv"), iq_frames(16, seed=2)[0], folder / "student.onnx", ExportConfig())
    _dataset(folder / "data.npz")
    _dataset(folder / "five.npz", classes=5)
    _dataset(folder / "short.npz", length=64)
    return folder


def _quantize(model, data, *extra: str) -> tuple[int, str]:
    argv = ["quantize", str(model), "--data", str(data), "--calibration", "random-256", "-q", *extra]
    result = CliRunner().invoke(cli, argv)
    return result.exit_code, result.output


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert "Traceback" not in output
    return lines[0]


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("data", "expected"), [("five.npz", "5 classes"), ("short.npz", "[2, 64]")])
def test_a_model_that_does_not_fit_the_data_is_refused_before_quantizing(tmp_path, files, data, expected):
    out = tmp_path / "int8" / "student.int8.onnx"
    code, output = _quantize(files / "student.onnx", files / data, "--out", str(out))
    assert code == 2
    line = _one_line(output)
    assert str(files / "student.onnx") in line and str(files / data) in line and expected in line, line
    assert not (tmp_path / "int8").exists()


def _with_symbolic_classes(src, dst) -> None:
    """The same model with its class axis symbolic: the class count shows only when it runs."""
    model = onnx.load(os.fspath(src))
    dim = model.graph.output[0].type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "classes"
    onnx.save(model, os.fspath(dst))


def test_a_late_failure_leaves_no_int8_model_and_restores_the_old_one(tmp_path, files):
    model = tmp_path / "student.onnx"
    _with_symbolic_classes(files / "student.onnx", model)
    old = {"student.int8.onnx": b"INT8 of an earlier run", "student.int8.onnx.json": b'{"kind": "onnx-int8"}'}
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)
    before = _names(tmp_path)
    code, output = _quantize(model, files / "five.npz")  # 4 scores, 5 classes: found after quantizing
    assert code == 2
    assert "5 classes" in _one_line(output)
    assert _names(tmp_path) == before
    assert {name: (tmp_path / name).read_bytes() for name in old} == old


def test_nan_weights_fail_as_non_finite_fp32_outputs(tmp_path, files):
    model = onnx.load(os.fspath(files / "student.onnx"))
    bias = next(init for init in model.graph.initializer if init.dims == [CLASSES])
    bias.CopyFrom(numpy_helper.from_array(np.full(CLASSES, np.nan, np.float32), bias.name))
    onnx.save(model, os.fspath(tmp_path / "nan.onnx"))
    code, output = _quantize(tmp_path / "nan.onnx", files / "data.npz")
    assert code == 2
    line = _one_line(output)
    assert f"outputs of FP32 model {tmp_path / 'nan.onnx'} are NaN/Inf on 16 of 16 frames" in line, line
    assert _names(tmp_path) == ["nan.onnx"]


def _conv_then(op: str, domain: str, path, **attrs) -> None:
    """Conv -> ``domain.op`` -> mean over time: ``[batch, 2, 128]`` -> ``[batch, 4]``."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 2, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    if op == "FusedConv":  # ORT's contrib conv: ORT runs it, symbolic shape inference cannot
        nodes = [helper.make_node(op, ["input", "W", "B"], ["c"], domain=domain, pads=[1, 1], **attrs)]
    else:
        nodes = [
            helper.make_node("Conv", ["input", "W"], ["x"], pads=[1, 1]),
            helper.make_node(op, ["x"], ["c"], domain=domain, **attrs),
        ]
    nodes.append(helper.make_node("ReduceMean", ["c"], ["logits"], axes=[2], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 128])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [weight, bias],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), os.fspath(path))


def test_a_graph_onnx_runtime_cannot_load_is_one_line_naming_the_input(tmp_path, files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "models" / "custom.onnx"
    model.parent.mkdir()
    _conv_then("Foo", "custom.domain", model)
    code, output = _quantize(model, files / "data.npz", "--out", str(tmp_path / "out" / "q.onnx"))
    assert code == 2
    line = _one_line(output)
    assert f"ONNX Runtime cannot load {model}" in line and "pre.onnx" not in line, line
    assert _names(tmp_path) == ["models"]  # no out/, no sym_shape_infer_temp.onnx
    assert _names(model.parent) == ["custom.onnx"]


def test_incomplete_symbolic_inference_runs_in_a_private_folder(tmp_path, monkeypatch, capfd):
    """ORT writes sym_shape_infer_temp.onnx into the cwd and logs when symbolic inference gives
    up: the first pass fails quietly inside a temporary folder and the second one is used."""
    monkeypatch.chdir(tmp_path)
    _conv_then("FusedConv", "com.microsoft", tmp_path / "fused.onnx", activation="Relu")
    (tmp_path / "work").mkdir()
    pre, note = preprocess(tmp_path / "fused.onnx", tmp_path / "work" / "pre.onnx")
    assert pre.is_file() and "symbolic shape inference skipped" in note
    assert _names(tmp_path) == ["fused.onnx", "work"] and _names(tmp_path / "work") == ["pre.onnx"]
    captured = capfd.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err


def test_a_pre_processing_failure_is_one_line_naming_the_input(tmp_path, files, monkeypatch, capfd):
    """Both passes fail the way ORT does: a file in the cwd, a logged traceback, an error that
    names its own temporary file. One QuantizeError naming the input remains."""

    def failing(src, dst, **_kwargs):
        open(ORT_TEMP, "wb").close()
        logging.getLogger("onnxruntime.quantization").error("Traceback (most recent call last): ...")
        print("optimizer says hello")
        print("Traceback (most recent call last):", file=sys.stderr)
        raise RuntimeError(f"Load model from {os.getcwd()}/optimized.onnx failed: bad graph")

    monkeypatch.setattr("onnxruntime.quantization.shape_inference.quant_pre_process", failing)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    with pytest.raises(QuantizeError) as info:
        preprocess(files / "student.onnx", tmp_path / "work" / "pre.onnx")
    line = info.value.one_line()
    assert f"cannot pre-process {files / 'student.onnx'} for quantization" in line and "bad graph" in line
    assert ".ort-preprocess" not in line and "<temporary folder>/optimized.onnx" in line, line
    assert _names(tmp_path) == ["work"] and _names(tmp_path / "work") == []
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_threads_reach_the_quantizer_and_a_bad_count_is_one_line(tmp_path, files):
    out = tmp_path / "student.int8.onnx"
    code, output = _quantize(
        files / "student.onnx", files / "data.npz", "--activation-type", "uint8", "--threads", "1",
        "--max-accuracy-drop", "1.0", "--min-top1-agreement", "0.0", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    quantization = json.loads((tmp_path / "student.int8.onnx.json").read_text())["metrics"]["quantization"]
    assert quantization["threads"] == 1 and quantization["assessment"]["threads"] == 1
    code, output = _quantize(files / "student.onnx", files / "data.npz", "--threads", "0", "--out", str(out))
    assert code == 2 and "--threads must be in 1.." in _one_line(output)
