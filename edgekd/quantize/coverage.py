"""What a QDQ graph really quantizes: Q/DQ counts, dtypes, and op coverage (nodes and MACs
that run in INT8 against those left in float).

A compute node "runs in INT8" when every activation input arrives through a
DequantizeLinear and, for weighted ops, the weight does too: that is the pattern
ONNX Runtime (QLinearConv, MatMulInteger...) and TensorRT fuse into integer kernels.
MACs are per sample (batch dimension excluded), from shape inference.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from edgekd.export.onnx_export import load_onnx_checked

_QDQ = {"QuantizeLinear", "DequantizeLinear"}
# Ops that do the arithmetic; data movement (Reshape, Flatten, MaxPool...) is counted as nodes only.
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def describe_quantized(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Count Q/DQ nodes and report the dtypes really present in a quantized ONNX graph.

    Returns ``quantize_linear``/``dequantize_linear`` counts, ``activation_zero_point_dtypes``
    (zero points of QuantizeLinear, i.e. runtime-quantized activations: "uint8" or "int8"),
    ``weight_dtypes`` (stored quantized initializers feeding DequantizeLinear, int32 biases
    excluded), ``per_channel_weights`` (such DequantizeLinear with a vector scale) and ``ops``.
    """
    import onnx

    model = load_onnx_checked(path, check=False)
    inits = {init.name: init for init in model.graph.initializer}
    dtype = {name: onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name for name, init in inits.items()}
    ops: dict[str, int] = {}
    act_zp, weights = set(), set()
    per_channel = 0
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        if node.op_type == "QuantizeLinear":
            # Without a zero-point input the ONNX spec defaults to uint8.
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            act_zp.add(dtype.get(zp, "uint8") if zp else "uint8")
        elif node.op_type == "DequantizeLinear" and dtype.get(node.input[0], "int32") != "int32":
            weights.add(dtype[node.input[0]])
            scale = inits.get(node.input[1])
            per_channel += int(scale is not None and len(scale.dims) > 0)
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "activation_zero_point_dtypes": sorted(act_zp),
        "weight_dtypes": sorted(weights),
        "per_channel_weights": per_channel,
        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
    }


def op_coverage(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Nodes and MACs of a QDQ ONNX model that run in INT8 vs float.

    Returns ``{"int8_nodes", "float_nodes", "int8_macs", "float_macs", "mac_fraction_int8",
    "float_compute_nodes": [names of Conv/Gemm/MatMul left in float]}``; Q/DQ nodes
    themselves and nodes that only touch constants are not counted.
    """
    import onnx

    model = load_onnx_checked(path, check=False)
    # Shapes only refine MACs; a graph shape inference rejects still has its nodes counted.
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    shapes = {vi.name: _dims(vi) for vi in [*graph.value_info, *graph.output, *graph.input]}

    def dequantized(tensor: str) -> bool:
        node = producer.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear"

    def constant(tensor: str) -> bool:
        if tensor in inits:
            return True
        node = producer.get(tensor)
        return node is not None and (
            node.op_type == "Constant" or (node.op_type == "DequantizeLinear" and node.input[0] in inits)
        )

    counts = {"int8_nodes": 0, "float_nodes": 0, "int8_macs": 0, "float_macs": 0}
    float_compute: list[str] = []
    for node in graph.node:
        if node.op_type in _QDQ or node.op_type == "Constant":
            continue
        inputs = [name for name in node.input if name]
        # Bias (input 2 of Conv/Gemm) is int32 through DQ in QDQ graphs, or float when not quantized.
        checked = inputs[:2] if node.op_type in _WEIGHTED else inputs
        activations = [name for name in checked if not constant(name)]
        if not activations:
            continue
        in_int8 = all(dequantized(name) for name in checked)
        key = "int8" if in_int8 else "float"
        counts[f"{key}_nodes"] += 1
        macs = _macs(node, inits, producer, shapes)
        counts[f"{key}_macs"] += macs
        if not in_int8 and node.op_type in _WEIGHTED:
            float_compute.append(node.name or node.output[0])
    total = counts["int8_macs"] + counts["float_macs"]
    return {
        **counts,
        "mac_fraction_int8": counts["int8_macs"] / total if total else 0.0,
        "float_compute_nodes": float_compute,
    }


def _dims(value: Any) -> list[int | None]:
    return [int(d.dim_value) if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _weight_dims(tensor: str, inits: dict[str, Any], producer: dict[str, Any]) -> list[int] | None:
    """Dims of a weight given directly or through DequantizeLinear (and Transpose/Identity-free)."""
    if tensor in inits:
        return list(inits[tensor].dims)
    node = producer.get(tensor)
    if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits:
        return list(inits[node.input[0]].dims)
    return None


def _macs(node: Any, inits: dict[str, Any], producer: dict[str, Any], shapes: dict[str, list]) -> int:
    """Multiply-accumulates per sample of Conv/Gemm/MatMul with a constant weight; 0 when unknown."""
    if node.op_type not in _WEIGHTED or len(node.input) < 2:
        return 0
    weight = _weight_dims(node.input[1], inits, producer)
    out = shapes.get(node.output[0])
    if weight is None:
        return 0
    if node.op_type == "Conv":
        # Every output position of every output channel does Cin/groups * kernel MACs.
        spatial = out[2:] if out else None
        if not spatial or any(d is None for d in spatial):
            return 0
        return int(np.prod(weight, dtype=np.int64) * np.prod(spatial, dtype=np.int64))
    if node.op_type == "Gemm":
        return int(np.prod(weight, dtype=np.int64))
    if node.op_type == "MatMul" and out and all(d is not None for d in out[1:]) and len(weight) == 2:
        return int(np.prod(out[1:], dtype=np.int64)) * weight[0]
    return 0
