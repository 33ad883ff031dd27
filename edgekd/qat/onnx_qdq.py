"""Rewrite the exporter's fake-quant graph into the Q/DQ form runtimes fuse, and check it.

The TorchScript exporter writes each weight as ``float initializer -> QuantizeLinear ->
DequantizeLinear`` and each bias as a float initializer. ``finalize_qdq`` makes the
graph look like ONNX Runtime's own static quantizer output, which ORT, OpenVINO and
TensorRT all read:

1. weights stored as int8 initializers feeding DequantizeLinear (the Q of a constant
   is computed here once, with QuantizeLinear's round-half-to-even);
2. per-tensor scales and zero points as scalars (the exporter writes 1-element vectors);
3. with ``int32_bias``: each Conv/Gemm bias as int32 on the grid ``s_input * s_weight``
   through DequantizeLinear, which ONNX Runtime needs to fuse QLinearConv/QGemm
   (TensorRT has no int32 DequantizeLinear: its form keeps float biases).
"""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def _np(init: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


def _replace_init(graph: Any, name: str, array: np.ndarray) -> None:
    from onnx import numpy_helper

    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    graph.initializer.append(numpy_helper.from_array(array, name))


def _attr(node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear on a constant: round half to even, saturate to the zero point's type."""
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x / scale) + zero_point.astype(np.int64)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def _constants_to_initializers(graph: Any) -> None:
    """Constant nodes holding a tensor become initializers (the tracer writes scales both ways)."""
    constants = [n for n in graph.node if n.op_type == "Constant" and n.attribute[0].name == "value"]
    for node in constants:
        tensor = node.attribute[0].t
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)


def finalize_qdq(model: Any, *, int32_bias: bool) -> dict[str, int]:
    """Rewrite ``model`` (an onnx ModelProto, in place) as described in the module docstring.

    Returns counts: ``weights_folded``, ``biases_quantized``, ``scalars``.
    """
    graph = model.graph
    _constants_to_initializers(graph)
    keep = _bypass_constant_identities(graph)
    scalars = _scalar_qparams(graph, keep)  # 2. before 1: the folding reads the scalars
    keep, folded = _fold_weights(graph, keep)  # 1.
    new_nodes = _int32_biases(graph, keep) if int32_bias else []  # 3.
    counts = {"weights_folded": folded, "biases_quantized": len(new_nodes), "scalars": scalars}
    del graph.node[:]
    graph.node.extend(new_nodes + keep)  # the bias DQs read only constants: valid at the front
    used = {name for node in graph.node for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return counts


def _initializers(graph: Any) -> dict[str, Any]:
    return {init.name: init for init in graph.initializer}


def _bypass_constant_identities(graph: Any) -> list[Any]:
    """The nodes without Identities of constants (the exporter dedups equal scales that way),
    their readers rewired to the constant itself."""
    inits = _initializers(graph)
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in inits}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    return [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]


def _scalar_qparams(graph: Any, nodes: list[Any]) -> int:
    """One-element scale / zero-point vectors -> scalars (a vector means per-axis to ORT)."""
    inits, count = _initializers(graph), 0
    for node in nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            for name in node.input[1:3]:
                if name in inits and list(inits[name].dims) == [1]:
                    _replace_init(graph, name, _np(inits[name]).reshape(()))
                    count += 1
    return count


def _fold_weights(graph: Any, nodes: list[Any]) -> tuple[list[Any], int]:
    """QuantizeLinear of a float initializer -> an int8 initializer read by the DequantizeLinear;
    (the nodes left, the count folded)."""
    inits = _initializers(graph)
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        weight = _np(inits[node.input[0]])
        scale, zp = _np(inits[node.input[1]]), _np(inits[node.input[2]])
        q_name = f"{node.input[0]}_quantized"
        _replace_init(graph, q_name, _quantize(weight, scale, zp, _attr(node, "axis", 1)))
        for consumer in consumers.get(node.output[0], []):
            consumer.input[0] = q_name
        dropped.add(id(node))
    return [n for n in nodes if id(n) not in dropped], len(dropped)


def _int32_biases(graph: Any, nodes: list[Any]) -> list[Any]:
    """Float bias of a fully quantized Conv/Gemm -> int32 on the grid ``s_input * s_weight``
    through a new DequantizeLinear; returns those new nodes."""
    from onnx import helper

    inits = _initializers(graph)
    producer = {out: n for n in nodes for out in n.output}
    new_nodes: list[Any] = []
    for node in nodes:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in inits:
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in (x_dq, w_dq)):
            continue
        s_x, s_w = _np(inits[x_dq.input[1]]), _np(inits[w_dq.input[1]])
        grid = (s_x.astype(np.float64) * s_w.astype(np.float64)).astype(np.float32).reshape(-1)
        bias = _np(inits[node.input[2]])
        q = np.clip(np.rint(bias / grid), -(2**31) + 1, 2**31 - 1).astype(np.int32)
        base = node.input[2]
        _replace_init(graph, f"{base}_quantized", q)
        _replace_init(graph, f"{base}_scale", grid)
        _replace_init(graph, f"{base}_zero_point", np.zeros(grid.shape, np.int32))
        dq = helper.make_node(
            "DequantizeLinear",
            [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
            [f"{base}_dequantized"],
            name=f"{base}_DequantizeLinear",
            axis=0,
        )
        new_nodes.append(dq)
        node.input[2] = dq.output[0]
    return new_nodes


def unquantized_compute_nodes(model: Any) -> list[str]:
    """Names of Conv/Gemm/MatMul nodes whose activation input or weight does not come
    through a DequantizeLinear (so no runtime can run them in INT8)."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    missing = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        feeds = [producer.get(name) for name in node.input[:2]]
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in feeds):
            missing.append(node.name or node.output[0])
    return missing
