"""ONNX teachers as a new user meets them (issue #20, part 4): a file without class-name
metadata, a graph exported with a fixed batch, a parameter count taken after batch-norm
folding, and ONNX Runtime's thread count."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError
from edgekd.models import fit
from edgekd.models.onnx_teacher import OnnxTeacher
from edgekd.models.teacher import load_teacher

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

NAMES = ["BPSK", "QPSK", "FM"]


def _export(model: nn.Module, path, batch: int = 2, dynamic: bool = True, names=None):
    model.eval()
    torch.onnx.export(
        model,
        (torch.randn(batch, 2, 32),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        opset_version=17,
        dynamo=False,
    )
    if names is not None:  # the way the docs tell users to add the metadata
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, {"class_names": json.dumps(names)})
        onnx.save(proto, str(path))
    return path


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(1), nn.Linear(2 * 32, len(NAMES)))


def _data(n: int = 12) -> ArrayDataset:
    x = np.random.default_rng(0).standard_normal((n, 2, 32)).astype(np.float32)
    split = (np.arange(n) // 3) % 3
    return ArrayDataset(x=x, y=np.arange(n) % 3, class_names=NAMES, split=split, source="dataset d.npz")


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    # The warning is said once per file and process: each test starts with none said.
    monkeypatch.setattr(fit, "_unchecked_told", set(), raising=False)


# --- 1. class order: checked with metadata, one warning line without it ------------------------


def test_missing_class_names_metadata_is_said_once(tmp_path, caplog):
    path = _export(_linear(), tmp_path / "plain.onnx")
    caplog.set_level(logging.WARNING, logger="edgekd.models")
    for _ in range(2):  # the teacher stage checks it, the distill stage opens it again: one line
        load_teacher(path, _data())
    lines = [r.getMessage() for r in caplog.records if r.name == "edgekd.models"]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"teacher {path} has no class_names metadata, so its class order cannot be checked "
        "against dataset d.npz ['BPSK', 'QPSK', 'FM']"
    )
    assert "onnx.helper.set_model_props(model, {'class_names': json.dumps(names)})" in lines[0]


def test_documented_metadata_checks_the_order_and_silences_the_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edgekd.models")
    good = _export(_linear(), tmp_path / "named.onnx", names=NAMES)
    load_teacher(good, _data())
    assert not [r for r in caplog.records if r.name == "edgekd.models"]
    swapped = _export(_linear(), tmp_path / "swapped.onnx", names=["QPSK", "BPSK", "FM"])
    with pytest.raises(ConfigError, match="same order"):
        load_teacher(swapped, _data())


# --- 2. a fixed batch: chunks of exactly that batch, the last one padded -----------------------


def test_fixed_batch_teacher_takes_a_smaller_last_chunk(tmp_path):
    model = _linear()
    path = _export(model, tmp_path / "fixed4.onnx", batch=4, dynamic=False)
    teacher = OnnxTeacher(path, batch_size=256)
    assert teacher.fixed_batch == 4
    x = torch.randn(10, 2, 32)  # chunks of 4, 4 and 2 (+ 2 padding rows, dropped)
    fed = []

    class Spy:  # records the batch ORT is given, runs the real session
        def __init__(self, session):
            self.session = session

        def run(self, out, feeds):
            fed.append(len(feeds["x"]))
            return self.session.run(out, feeds)

    teacher.session = Spy(teacher.session)
    out = teacher(x)
    assert fed == [4, 4, 4]
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-4, rtol=1e-4)
    assert teacher(x[:3]).shape == (3, 3)  # fewer frames than one batch


# --- 3. the parameter count says it is the exported graph's -----------------------------------


def test_parameter_count_is_labelled_as_exported_with_batch_norms_folded(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(1), nn.Linear(4 * 30, 3)
    )
    from edgekd.models.onnx_teacher import PARAMETERS_AS_EXPORTED

    teacher = OnnxTeacher(_export(model, tmp_path / "bn.onnx"))
    # Folded: conv weight + a new conv bias + linear; the batch norm's 8 parameters are gone.
    assert teacher.num_parameters == 4 * 2 * 3 + 4 + 4 * 30 * 3 + 3
    assert teacher.num_parameters < sum(p.numel() for p in model.parameters())
    assert teacher.parameters_note == PARAMETERS_AS_EXPORTED == "as exported with batch norms folded"

    from edgekd.pipeline.distill_stage import _pairing, _teacher_figures

    figures = _teacher_figures(teacher, None, main=False)
    assert figures["teacher_params_counted"] == PARAMETERS_AS_EXPORTED  # in student.pt's manifest
    line = _pairing("bn.onnx", figures, "edgekd:cnn1d_small", 100)
    assert "(391 params as exported with batch norms folded, val acc" in line


def test_integer_initializers_are_not_parameters(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),  # a shape, not a weight
        numpy_helper.from_array(rng.standard_normal((64, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["y"]),
        ],
        "reshape_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        inits,
    )
    path = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    teacher = OnnxTeacher(path)
    assert teacher.num_parameters == 64 * 3 + 3
    assert teacher(torch.randn(5, 2, 32)).shape == (5, 3)


# --- 4. ONNX Runtime threads: an argument, and distill.train.num_threads in a recipe ------------


def test_threads_reach_the_onnx_runtime_session(tmp_path):
    path = _export(_linear(), tmp_path / "t.onnx", names=NAMES)
    teacher, _name = load_teacher(path, _data(), threads=1)
    assert teacher.session.get_session_options().intra_op_num_threads == 1
    assert OnnxTeacher(path, threads=3).session.get_session_options().intra_op_num_threads == 3


def test_distill_stage_passes_num_threads_to_the_teacher(tmp_path, monkeypatch):
    from edgekd.pipeline import distill_stage

    seen = {}

    def spy(path, dataset, *, threads=None):
        seen["threads"] = threads
        raise RuntimeError("stop before training")

    data = tmp_path / "d.npz"
    _data().save_npz(data)
    monkeypatch.setattr(distill_stage, "load_teacher", spy)
    section = distill_stage.DistillSection()
    section.train.num_threads = 2
    with pytest.raises(RuntimeError, match="stop before training"):
        distill_stage.stage_distill(
            distill_stage.StudentSection(), section, data, tmp_path / "t.onnx", tmp_path / "out"
        )
    assert seen["threads"] == 2


def test_onnx_teachers_are_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text(encoding="utf-8")
    flat = " ".join(text.split())
    assert "**ONNX teachers.**" in flat
    for fragment in ("onnx.helper.set_model_props", "fixed batch", "as exported with batch norms folded"):
        assert fragment in flat, fragment
    assert "`distill.train.num_threads` sets its ONNX Runtime threads" in flat
