"""Explicit-quantization ONNX for TensorRT: Q/DQ from ONNX Runtime's quantizer in the one
form TensorRT accepts, and a check that a file really has that form.

TensorRT's explicit quantization (the only INT8 route in TensorRT 11, and the
strongly typed one in 10) wants symmetric INT8: every Q/DQ zero point 0, signed int8
activations and weights, biases in float (no int32 DequantizeLinear). Per-channel
weight scales are on axis 0 of Conv weights, which TensorRT supports.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, require_file
from edgekd.export.onnx_export import as_samples, load_onnx_checked
from edgekd.quantize.config import QuantizeConfig, QuantizeError


def quantize_for_tensorrt(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    *,
    per_channel: bool = True,
    calibration_method: str = "entropy",
) -> dict[str, Any]:
    """Static INT8 Q/DQ ONNX of ``fp32_path`` for TensorRT at ``out_path``.

    ``calibration_samples``: float32 ``[N, ...]`` frames from the calibration recipe;
    ``calibration_method``: "minmax", "entropy" (TensorRT's own calibrator's choice) or
    "percentile". Returns ``check_tensorrt_qdq`` of the written file.
    """
    from edgekd.quantize.ort_build import (
        CALIB_BATCH,
        FrameReader,
        calibration_input,
        preprocess,
        quantize_qdq,
        quiet_logs,
    )

    fp32_path = require_file(fp32_path, "ONNX model", hint="run `edgekd export` first")
    load_onnx_checked(fp32_path)
    calib = as_samples(calibration_samples, "calibration samples")
    cfg = QuantizeConfig(
        activation_type="int8", weight_type="int8", per_channel=per_channel, reduce_range=False
    )
    cfg = dataclasses.replace(cfg, calibration_method=calibration_method)
    cfg.validate()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        with quiet_logs(False):
            pre, _ = preprocess(fp32_path, work / "pre.onnx")
            inp, fixed = calibration_input(pre, calib)
            reader = FrameReader(calib, inp.name, fixed or CALIB_BATCH)
            built = quantize_qdq(pre, work / "trt.onnx", reader, "int8", cfg, False, work, tensorrt=True)
        summary = check_tensorrt_qdq(built)
        with atomic_path(out_path) as tmp:
            os.replace(built, tmp)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_tensorrt_qdq(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify that every Q/DQ pair in ``path`` is symmetric int8 (zero point 0) and no bias
    goes through an int32 DequantizeLinear; QuantizeError naming the first offender otherwise.

    Returns counts: ``quantize_linear``, ``dequantize_linear``, ``activation_dtype`` ("int8"),
    ``per_channel_weights`` (DQ with a vector scale), ``quantized_ops`` (op types fed by a DQ).
    """
    from onnx import numpy_helper

    model = load_onnx_checked(path, check=False)
    inits = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    per_channel = 0
    for node in model.graph.node:
        if node.op_type not in counts:
            continue
        counts[node.op_type] += 1
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zp_name is None:  # the ONNX default zero point is uint8 0: asymmetric range for TensorRT
            raise QuantizeError(
                f"{node.op_type} {node.name} has no zero point (uint8 by default)",
                hint="quantize with quantize_for_tensorrt (int8 symmetric)",
            )
        zero = numpy_helper.to_array(inits[zp_name]) if zp_name in inits else None
        if zero is None or zero.dtype != np.int8 or np.any(zero != 0):
            got = "non-constant" if zero is None else f"{zero.dtype} {zero.ravel()[:4].tolist()}"
            raise QuantizeError(
                f"{node.op_type} {node.name} has zero point {got}; TensorRT needs int8 zero points of 0",
                hint="quantize with quantize_for_tensorrt (ActivationSymmetric, WeightSymmetric)",
            )
        scale = inits.get(node.input[1])
        per_channel += int(node.op_type == "DequantizeLinear" and scale is not None and len(scale.dims) > 0)
    quantized_ops = sorted(
        {
            node.op_type
            for node in model.graph.node
            if node.op_type not in counts
            and any(
                producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input
            )
        }
    )
    return {
        "quantize_linear": counts["QuantizeLinear"],
        "dequantize_linear": counts["DequantizeLinear"],
        "activation_dtype": "int8",
        "per_channel_weights": per_channel,
        "quantized_ops": quantized_ops,
    }
