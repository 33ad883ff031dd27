"""ONNX models: broken, hostile and valid files through every command that opens one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix


def _first_conv_weight(model: onnx.ModelProto) -> onnx.TensorProto:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return next(i for i in model.graph.initializer if i.name == conv.input[1])


def _fill(value: float, everywhere: bool):
    def apply(model: onnx.ModelProto) -> None:
        init = _first_conv_weight(model)
        arr = numpy_helper.to_array(init).copy()
        if everywhere:
            arr[...] = value
        else:
            arr.reshape(-1)[0] = value
        init.CopyFrom(numpy_helper.from_array(arr, init.name))

    return apply


def _input_dims(*dims):
    def apply(model: onnx.ModelProto) -> None:
        shape = model.graph.input[0].type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d

    return apply


def _input_dtype(elem_type: int):
    """The graph takes another dtype and casts it to float (a valid model that does not fit the data)."""

    def apply(model: onnx.ModelProto) -> None:
        graph = model.graph
        old = graph.input[0]
        new = helper.make_tensor_value_info("input_other", elem_type, ["batch", 2, 128])
        graph.node.insert(0, helper.make_node("Cast", ["input_other"], [old.name], to=TensorProto.FLOAT))
        graph.input.remove(old)
        graph.input.insert(0, new)

    return apply


def _two_inputs(model: onnx.ModelProto) -> None:
    model.graph.input.append(helper.make_tensor_value_info("second", TensorProto.FLOAT, ["batch", 1]))


def _reroute_output(build):
    """Rename the graph output to logits_old and let ``build(graph, 'logits_old', name)`` make it again."""

    def apply(model: onnx.ModelProto) -> None:
        graph = model.graph
        out = graph.output[0]
        for node in graph.node:
            node.output[:] = ["logits_old" if o == out.name else o for o in node.output]
        build(graph, "logits_old", out.name)

    return apply


def _five_classes(graph, old, name):
    graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 1], dtype=np.int64), "pad5"))
    graph.node.append(helper.make_node("Pad", [old, "pad5"], [name]))
    graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5


def _opset(version: int):
    def apply(model: onnx.ModelProto) -> None:
        model.opset_import[0].version = version

    return apply


def _unknown_domain(model: onnx.ModelProto) -> None:
    node = next(n for n in model.graph.node if n.op_type in ("Identity", "Relu"))
    node.op_type, node.domain = "Evil", "com.evil.ops"
    model.opset_import.append(helper.make_opsetid("com.evil.ops", 1))


def _missing_initializer(model: onnx.ModelProto) -> None:
    model.graph.initializer.remove(_first_conv_weight(model))


def _dangling_input(model: onnx.ModelProto) -> None:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.input[0] = "nowhere"


def _external(location: str):
    """The first conv weight stored 'externally' at ``location`` (a path the file chooses)."""

    def apply(model: onnx.ModelProto) -> None:
        init = _first_conv_weight(model)
        size = len(numpy_helper.to_array(init).tobytes())
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value

    return apply


def _no_nodes(model: onnx.ModelProto) -> None:
    del model.graph.node[:]


def _ir_version(model: onnx.ModelProto) -> None:
    model.ir_version = 99


PROTO = {
    "weight-nan-all": _fill(float("nan"), True),
    "weight-inf-one": _fill(float("inf"), False),
    "input-length-64": _input_dims("batch", 2, 64),
    "input-channels-3": _input_dims("batch", 3, 128),
    "input-rank-2": _input_dims("batch", 256),
    "input-float64": _input_dtype(TensorProto.DOUBLE),
    "input-int64": _input_dtype(TensorProto.INT64),
    "two-inputs": _two_inputs,
    "output-5-classes": _reroute_output(_five_classes),
    "opset-99": _opset(99),
    "unknown-domain-op": _unknown_domain,
    "missing-initializer": _missing_initializer,
    "dangling-node-input": _dangling_input,
    "external-data-traversal": _external("../../../../../../../../../etc/hostname"),
    "external-data-absolute": _external("/etc/hostname"),
    "external-data-missing": _external("weights-that-are-not-there.bin"),
    "no-nodes": _no_nodes,
    "ir-version-99": _ir_version,
}
BYTES = ["truncate-2pct", "truncate-50pct", "truncate-98pct", "empty-file", "garbage", "text-file"]
BYTES += ["flip-0", "flip-1", "flip-2", "checkpoint-bytes"]
LOAD = [*BYTES, "opset-99", "unknown-domain-op", "missing-initializer", "dangling-node-input"]
LOAD += [
    "external-data-traversal",
    "external-data-absolute",
    "external-data-missing",
    "no-nodes",
    "ir-version-99",
]
SHAPE = ["input-length-64", "input-channels-3", "input-rank-2"]
# Not here: output [N, 1, K] (the evaluator flattens each frame's scores: still K of them).
FIT = ["input-float64", "input-int64", "two-inputs", "output-5-classes"]
FINITE = ["weight-nan-all", "weight-inf-one"]
ALL = LOAD + SHAPE + FIT + FINITE
SOME = ["truncate-50pct", "opset-99", "external-data-traversal", "input-length-64", "output-5-classes"]
SOME += ["weight-nan-all"]

SLOT = {
    "bench-onnx": "model_onnx",
    "quantize": "model_onnx",
    "gate-static-onnx": "model_onnx",
    "deploy-onnx": "model_onnx",
    "distill-data": "teacher",
    "bench-teacher": "teacher",
    "qat-teacher": "teacher",
}
# An ONNX teacher may take float16 or float64 frames (OnnxTeacher casts them): valid there.
TEACHER_OK = ["input-float64"]
CASES = (
    matrix("onnx", ALL, ["bench-onnx", "quantize"])
    + matrix("onnx", [m for m in ALL if m not in TEACHER_OK], ["distill-data"])
    + matrix("onnx", LOAD + SHAPE + FINITE, ["gate-static-onnx"])
    + matrix("onnx", SOME, ["bench-teacher", "qat-teacher", "deploy-onnx"])
)
VALID = [case("onnx", e, "accept", f"valid-{e}", "valid", e) for e in SLOT]
VALID += [case("onnx", "distill-data", "accept", f"{m}-distill-data", m, "distill-data") for m in TEACHER_OK]


def write_mutation(name: str, valid, dest: Path) -> Path:
    data = valid.onnx.read_bytes()
    if name == "valid":
        dest.write_bytes(data)
    elif name in PROTO:
        model = onnx.load_from_string(data)
        PROTO[name](model)
        dest.write_bytes(model.SerializeToString())
    elif name.startswith("truncate-"):
        cut = mut.truncate_broken(data, int(name.split("-")[1].rstrip("pct")) / 100, mut.onnx_broken(data))
        _write_or_skip(dest, cut, name)
    elif name.startswith("flip-"):
        _write_or_skip(dest, mut.effective_flip(data, int(name.split("-")[1]), mut.onnx_broken(data)), name)
    else:
        dest.write_bytes(
            {
                "empty-file": b"",
                "garbage": mut.garbage(),
                "text-file": b"ir_version: 8\nthis is not a model\n",
                "checkpoint-bytes": valid.student.read_bytes(),
            }[name]
        )
    return dest


def _write_or_skip(dest: Path, data: bytes | None, name: str) -> None:
    if data is None:
        pytest.skip(f"{name}: no such change of this file breaks it (deterministic search)")
    dest.write_bytes(data)


def _entry(entry: str) -> str:
    return {"qat-teacher": "qat"}.get(entry, entry)


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_onnx_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.onnx")
    expect_refusal(box, argv(_entry(entry), valid, box, **{SLOT[entry]: bad}), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_onnx_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "student-copy.onnx")
    expect_acceptance(box, argv(_entry(entry), valid, box, **{SLOT[entry]: good}))
