"""Is this model INT8? The one answer, for the backends, the device runner, the gate and the pipeline.

Two questions, kept apart:

* :func:`artifact_is_int8` - does the FILE hold an INT8 model (quantized activations)?
  It labels an artifact (``onnxruntime/int8``, ``openvino/int8``) before anything runs.
* :func:`onnx_executed_precision` - what ONNX Runtime really COMPUTES in with given session
  settings. A Q/DQ graph only runs integer kernels when ORT fuses the Q/DQ pairs into
  QLinearConv/QGemm, which it does at graph optimisation level ``extended`` or ``all`` on the
  CPU provider (and TensorRT builds INT8 from explicit Q/DQ). With optimisation disabled or
  ``basic``, or ``session.disable_quant_qdq=1``, or on the CUDA provider, Q/DQ is emulated
  in float: the entry executes float.

A graph holding DequantizeLinear only (weight-only quantization: int8 weights, float
activations) computes in float on every provider: it is NOT an INT8 model. It is labelled
by its float type; its smaller file shows in ``artifact.size_bytes``.

OpenVINO's executed precision is read from the compiled model by
:func:`.openvino_open.ov_executed_precision` (the same code on the device).
This module imports onnx only inside its functions, and raises plain errors (ValueError for
an unreadable file) that edgekd code above turns into its own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .onnxruntime_open import OrtSettings

# Ops that compute in integers whatever the session options: QOperator and dynamic quantization.
INTEGER_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "QGemm",
        "QAttention",
    }
)
# Optimisation levels at which ORT's CPU provider fuses Q/DQ pairs into integer kernels.
QDQ_FUSING_LEVELS = frozenset({"ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"})
Quantization = Literal["integer", "qdq", "weight-only", "none"]


def _op_types(graph: Any) -> set[str]:
    """Op types of ``graph`` and of every subgraph (If/Loop bodies)."""
    ops: set[str] = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            if attr.HasField("g"):
                ops |= _op_types(attr.g)
            for sub in attr.graphs:
                ops |= _op_types(sub)
    return ops


def onnx_op_types(model: Any) -> set[str]:
    """Op types of an ``onnx.ModelProto``: main graph, subgraphs and local functions."""
    ops = _op_types(model.graph)
    for function in model.functions:
        ops |= {node.op_type for node in function.node}
    return ops


def onnx_quantization(model: Any) -> Quantization:
    """How an ``onnx.ModelProto`` is quantized.

    "integer": QOperator or integer ops (QLinear*, ConvInteger, dynamic quantization), INT8
    on any settings; "qdq": QuantizeLinear on activations (INT8 once ORT fuses it);
    "weight-only": DequantizeLinear without QuantizeLinear (float compute); "none".
    """
    ops = onnx_op_types(model)
    if ops & INTEGER_OPS or any(op.startswith("QLinear") for op in ops):
        return "integer"
    if "QuantizeLinear" in ops:
        return "qdq"
    if "DequantizeLinear" in ops:
        return "weight-only"
    return "none"


def onnx_model_is_int8(model: Any) -> bool:
    """Is this ``onnx.ModelProto`` an INT8 model? Activations quantized (Q/DQ or integer ops);
    weight-only quantization is not."""
    return onnx_quantization(model) in ("integer", "qdq")


def ort_runs_qdq_as_int8(settings: OrtSettings | None) -> bool:
    """Whether ORT with ``settings`` (None = the defaults: CPU, ``ORT_ENABLE_ALL``) fuses Q/DQ
    into integer kernels."""
    settings = settings or OrtSettings()
    if settings.providers[0] == "TensorrtExecutionProvider":
        return True  # TensorRT builds INT8 layers from explicit Q/DQ itself
    if settings.providers[0] != "CPUExecutionProvider":
        return False  # CUDA runs QuantizeLinear/DequantizeLinear as kernels around float ops
    if str(settings.config_entries.get("session.disable_quant_qdq", "0")) == "1":
        return False
    return settings.graph_optimization_level in QDQ_FUSING_LEVELS


def onnx_float_precision(model: Any) -> str:
    """The dominant float type of the initializers: "fp32", "fp16" or "bf16" (fp32 when none)."""
    import onnx

    weight: dict[int, int] = {}
    for init in model.graph.initializer:
        count = int(np.prod(init.dims, dtype=np.int64)) if init.dims else 1
        weight[init.data_type] = weight.get(init.data_type, 0) + count
    tp = onnx.TensorProto
    floats = {tp.FLOAT: "fp32", tp.FLOAT16: "fp16", tp.BFLOAT16: "bf16"}
    present = {label: weight.get(code, 0) for code, label in floats.items()}
    best = max(present, key=lambda k: present[k])
    return best if present[best] else "fp32"


def onnx_executed_precision(path: str | Path, settings: OrtSettings | None = None) -> str:
    """What ONNX Runtime computes ``path`` in with session ``settings``.

    "int8" for an integer graph, or a Q/DQ graph ORT fuses (:func:`ort_runs_qdq_as_int8`);
    otherwise the float type of the weights ("fp32", "fp16", "bf16").
    """
    model = read_onnx(path)
    kind = onnx_quantization(model)
    if kind == "integer" or (kind == "qdq" and ort_runs_qdq_as_int8(settings)):
        return "int8"
    return onnx_float_precision(model)


def openvino_ir_is_int8(path: str | Path) -> bool:
    """Whether an OpenVINO IR (.xml) holds a FakeQuantize layer (NNCF's INT8 marking).

    Weight compression (u8/i8 constants with Convert/Multiply, no FakeQuantize) is float
    compute and gives False. The XML is parsed (no DTDs or entities), not searched as text,
    so a layer merely named "FakeQuantize..." does not count.
    """
    try:
        for _event, elem in ET.iterparse(str(path), events=("start",)):
            if elem.tag == "layer" and elem.get("type") == "FakeQuantize":
                return True
            elem.clear()
    except ET.ParseError as exc:
        raise ValueError(f"{path} is not a readable OpenVINO IR: {exc}") from None
    return False


def read_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` at ``path`` without external data; ValueError when it is not a
    readable ONNX model (protobuf parses many byte strings: a model needs a graph and an opset)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ValueError(f"{path} is not an ONNX model (no graph)")
    return model


def artifact_is_int8(path: str | Path) -> bool:
    """Is this model file INT8? ONNX: activations quantized (Q/DQ or integer ops; weight-only
    is not); OpenVINO IR: FakeQuantize layers. Other files (a .pt checkpoint, an engine whose
    precision its manifest records) are not judged here: False."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return onnx_model_is_int8(read_onnx(path))
    if suffix == ".xml":
        return openvino_ir_is_int8(path)
    return False
