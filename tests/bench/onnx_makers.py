"""Small ONNX classifiers built with onnx.helper (no export, milliseconds): valid ones of any
input shape, and the siblings a bench or a gate must refuse (wrong dtype, two inputs,
an unknown domain, opset 99, NaN weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_classifier(
    path: Path,
    frame: tuple[int, ...] = (2, 128),
    *,
    batch: int | str = "N",
    classes: int = 4,
    dtype: int = TensorProto.FLOAT,
    inputs: int = 1,
    opset: int = 17,
    extra_domain: str | None = None,
    weight: float | None = None,
) -> Path:
    """``x [batch, *frame]`` -> Flatten -> Gemm -> ``logits [batch, classes]``.

    ``dtype`` other than FLOAT casts the input first; ``inputs`` 2 adds a second input of the
    same shape; ``extra_domain`` routes the logits through an op of that (unknown) domain;
    ``weight`` fills the weights with one value (e.g. NaN).
    """
    rng = np.random.default_rng(0)
    features = int(np.prod(frame))
    w = rng.standard_normal((features, classes)).astype(np.float32)
    if weight is not None:
        w[:] = weight
    nodes = []
    graph_inputs = [helper.make_tensor_value_info("x", dtype, [batch, *frame])]
    source = "x"
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        source = "xf"
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, *frame]))
        nodes.append(helper.make_node("Add", [source, "y"], ["xy"]))
        source = "xy"
    nodes.append(helper.make_node("Flatten", [source], ["flat"], axis=1))
    out = "logits" if extra_domain is None else "pre"
    nodes.append(helper.make_node("Gemm", ["flat", "w"], [out]))
    opsets = [helper.make_opsetid("", opset)]
    if extra_domain is not None:
        nodes.append(helper.make_node("Mystery", ["pre"], ["logits"], domain=extra_domain))
        opsets.append(helper.make_opsetid(extra_domain, 1))
    graph = helper.make_graph(
        nodes,
        "linear",
        graph_inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
