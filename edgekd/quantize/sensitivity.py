"""Per-layer sensitivity of a QDQ model: how much each Q/DQ pair degrades its tensor.

Each activation QuantizeLinear -> DequantizeLinear pair is applied, with its own scale
and zero point, to the tensor the *float* model computes there on calibration frames
(ONNX Runtime): the error this pair adds by itself, with no error inherited from
upstream layers (measured on the fully quantized graph, a layer after a broken one
looks broken too, because its calibrated range no longer fits what it receives).

SQNR in dB = 10 log10(sum x^2 / sum (x - x̂)^2), about 6 dB per bit: ~40 dB is a healthy
8-bit tensor. It is computed per channel (axis 1) and averaged in dB, because an
outlier channel holds most of a tensor's energy: one channel of 3000 beside channels of
1 gives a whole-tensor SQNR of 55 dB while the ordinary channels are rounded to zero.
A node's sensitivity is its worst quantized activation (inputs and output); excluding the
node (``nodes_to_exclude``) removes those Q/DQ pairs unless a neighbour still quantizes
the same tensor.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.export.onnx_export import as_samples, load_onnx_checked, ort_session

_BATCH = 16  # frames per inference call; every Q/DQ tensor of the batch is held at once
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class NodeSensitivity:
    """``sqnr_db`` of the node's worst quantized activation ``tensor`` (inf when exact)."""

    node: str
    op_type: str
    sqnr_db: float
    tensor: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sqnr_db"] = self.sqnr_db if math.isfinite(self.sqnr_db) else None
        return data


def tensor_sqnr(
    qdq_path: str | os.PathLike[str], fp32_path: str | os.PathLike[str], frames: np.ndarray
) -> dict[str, float]:
    """Channel-mean SQNR in dB of every activation tensor quantized in ``qdq_path``, applied to
    the float activations of ``fp32_path`` on ``frames`` ``[N, ...]``.

    Keys are the float tensor names entering QuantizeLinear; weights are not included;
    tensors the float model does not have under that name are left out.
    """
    import onnx

    frames = as_samples(frames, "sensitivity frames")
    params = _activation_qparams(load_onnx_checked(qdq_path, check=False))
    model = load_onnx_checked(fp32_path, check=False)
    produced = {out for node in model.graph.node for out in node.output}
    inputs = {value.name for value in model.graph.input}
    located = {q: _float_name(q, produced | inputs) for q in params}
    located = {q: name for q, name in located.items() if name is not None}
    existing = {value.name for value in model.graph.output}
    for name in set(located.values()) - existing - inputs:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    signal: dict[str, np.ndarray] = {}
    noise: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-sqnr-") as folder:
        probe = Path(folder) / "probe.onnx"
        onnx.save(model, os.fspath(probe))
        session = ort_session(probe)
        input_name = session.get_inputs()[0].name
        names = [out.name for out in session.get_outputs()]
        for start in range(0, len(frames), _BATCH):
            batch = frames[start : start + _BATCH]
            values = dict(zip(names, session.run(names, {input_name: batch}), strict=True))
            values[input_name] = batch
            for tensor, name in located.items():
                x = values[name].astype(np.float64)
                err = x - _fake_quantize(x, *params[tensor])
                x2, e2 = _per_channel_sum(x * x), _per_channel_sum(err * err)
                signal[tensor] = signal.get(tensor, 0.0) + x2
                noise[tensor] = noise.get(tensor, 0.0) + e2
    return {tensor: _channel_mean_db(signal[tensor], noise[tensor]) for tensor in signal}


def node_sensitivity(
    qdq_path: str | os.PathLike[str], fp32_path: str | os.PathLike[str], frames: np.ndarray
) -> list[NodeSensitivity]:
    """Quantized nodes of ``qdq_path`` ordered most damaging first (lowest SQNR, then graph order);
    ``fp32_path`` is the float model it was quantized from, ``frames`` calibration frames."""
    sqnr = tensor_sqnr(qdq_path, fp32_path, frames)
    model = load_onnx_checked(qdq_path, check=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    q_of_output = {node.input[0]: node for node in model.graph.node if node.op_type == "QuantizeLinear"}
    ranked = []
    for order, node in enumerate(model.graph.node):
        if node.op_type in _QDQ:
            continue
        tensors = []
        for name in node.input:
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in sqnr:
                tensors.append(q.input[0])
        tensors += [out for out in node.output if out in q_of_output and out in sqnr]
        if tensors:
            worst = min(tensors, key=lambda t: sqnr[t])
            name = node.name or node.output[0]
            ranked.append((sqnr[worst], order, NodeSensitivity(name, node.op_type, sqnr[worst], worst)))
    return [item for _, _, item in sorted(ranked, key=lambda r: (r[0], r[1]))]


def _activation_qparams(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray, int, int]]:
    """Float tensor entering each activation QuantizeLinear -> (scale, zero point, qmin, qmax)."""
    from onnx import numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    params = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits or node.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zp_init = inits.get(node.input[2]) if len(node.input) > 2 else None
        zero = numpy_helper.to_array(zp_init) if zp_init is not None else np.zeros((), np.uint8)
        info = np.iinfo(zero.dtype)
        params[node.input[0]] = (scale, zero.astype(np.float64), int(info.min), int(info.max))
    return params


def _float_name(qdq_tensor: str, available: set[str]) -> str | None:
    # The quantizer renames a graph output X it quantizes to "X_QuantizeLinear_Input".
    for name in (qdq_tensor, qdq_tensor.removesuffix("_QuantizeLinear_Input")):
        if name in available:
            return name
    return None


def _fake_quantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear (round half to even, as ONNX specifies)."""
    if scale.ndim == 1 and x.ndim > 1:  # per-axis (axis 1) parameters
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    q = np.clip(np.rint(x / scale) + zero, qmin, qmax)
    return (q - zero) * scale


def _per_channel_sum(values: np.ndarray) -> np.ndarray:
    """Sum over every axis but 1 (channels) -> ``[C]``; a 1-D tensor is one channel."""
    if values.ndim < 2:
        return np.array([values.sum()])
    return values.sum(axis=tuple(i for i in range(values.ndim) if i != 1))


def _channel_mean_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Mean over channels with signal of 10 log10(signal / noise), an exact channel capped at 120 dB."""
    live = signal > 0
    if not live.any():
        return math.inf
    ratio = signal[live] / np.maximum(noise[live], signal[live] * 1e-12)
    return float(np.mean(10.0 * np.log10(ratio)))
