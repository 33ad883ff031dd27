"""Dynamic INT8 (weights INT8 ahead of time, activation ranges computed per call) only where
it pays, decided by measurement on this CPU.

ONNX Runtime maps dynamically quantized Conv to ConvInteger, which has no fast kernel on
x86: measured here it made convolutional nets 1.3x to 15x slower than FP32, while
MatMul-heavy nets (transformers, LSTMs, MLP heads) can gain. So dynamic quantization is
refused for graphs with Conv unless ``allow_conv``, and refused for any graph where it is
not faster than FP32; the reason quotes the measured figures of FP32, static INT8 and
dynamic INT8.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, ensure_dir, place, require_file
from edgekd.export.onnx_export import as_samples, load_onnx_checked, short_reason
from edgekd.quantize.config import QuantizeConfig, QuantizeError
from edgekd.quantize.ort_build import preprocess, quiet_logs
from edgekd.quantize.ort_static import quantize_onnx_static
from edgekd.quantize.timing import time_batch1
from edgekd.runtime.threads import default_threads


class DynamicNotWorthIt(QuantizeError):
    """Dynamic INT8 refused: measured slower than FP32, or a conv net without ``allow_conv``."""


@dataclass
class DynamicVerdict:
    """Median batch-1 ms of ``fp32``, ``static`` (QDQ INT8) and ``dynamic`` INT8 with ``threads``
    threads; ``allowed``: dynamic may be used; ``reason``: one line with the figures."""

    timings_ms: dict[str, float]
    conv_nodes: int
    matmul_nodes: int
    allowed: bool
    reason: str
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_dynamic(
    fp32_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    *,
    allow_conv: bool = False,
    rounds: int = 20,
    keep_dynamic: str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> DynamicVerdict:
    """Time FP32, static INT8 and dynamic INT8 of ``fp32_path`` at batch 1 and decide.

    ``calibration_samples``: float32 ``[N, ...]`` frames (calibrate the static model; the
    first is the timing input). ``keep_dynamic``: also write the dynamic model there
    (whatever the verdict; the caller decides). ``threads``: CPU threads the three are timed
    with; None: every core this process may use.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = require_file(fp32_path, "ONNX model", hint="run `edgekd export` first")
    ops = [node.op_type for node in load_onnx_checked(fp32_path).graph.node]
    convs, matmuls = ops.count("Conv"), ops.count("MatMul") + ops.count("Gemm")
    calib = as_samples(calibration_samples, "calibration samples")
    work = Path(tempfile.mkdtemp(prefix=".edgekd-dynamic."))
    try:
        with quiet_logs(False):
            pre, _ = preprocess(fp32_path, work / "pre.onnx")
            static = work / "static.onnx"
            static_cfg = QuantizeConfig(activation_type="uint8")
            quantize_onnx_static(fp32_path, static, calib, static_cfg, threads=threads)
            dynamic = work / "dynamic.onnx"
            try:
                quantize_dynamic(
                    os.fspath(pre), os.fspath(dynamic), weight_type=QuantType.QInt8, per_channel=True
                )
            except Exception as exc:  # ORT raises assorted errors on ops it cannot quantize dynamically
                raise QuantizeError(
                    f"ONNX Runtime dynamic quantization failed: {short_reason(exc)}",
                    hint="use static quantization",
                ) from None
        threads = threads if threads is not None else default_threads()
        timed = time_batch1(
            {"fp32": fp32_path, "static": static, "dynamic": dynamic}, calib[:1], threads, rounds=rounds
        )
        if keep_dynamic is not None:
            with atomic_path(keep_dynamic) as tmp:
                shutil.copyfile(dynamic, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = (
        f"FP32 {timed['fp32']:.3g} ms, static INT8 {timed['static']:.3g} ms, "
        f"dynamic INT8 {timed['dynamic']:.3g} ms at batch 1 with {threads} thread(s)"
    )
    speedup = timed["fp32"] / timed["dynamic"]
    if convs and not allow_conv:
        allowed, reason = (
            False,
            (
                f"dynamic INT8 refused for a conv net ({convs} Conv run as ConvInteger): {figures}, "
                f"dynamic {speedup:.2f}x vs FP32"
            ),
        )
    elif speedup <= 1.0:
        allowed, reason = False, f"dynamic INT8 refused, not faster than FP32: {figures}"
    else:
        allowed, reason = True, f"dynamic INT8 {speedup:.2f}x faster than FP32: {figures}"
    return DynamicVerdict(timed, convs, matmuls, allowed, reason, threads)


def quantize_onnx_dynamic(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    *,
    allow_conv: bool = False,
    threads: int | None = None,
) -> DynamicVerdict:
    """Write dynamic INT8 of ``fp32_path`` to ``out_path`` only when ``measure_dynamic`` allows it;
    DynamicNotWorthIt (with the measured figures) otherwise, and nothing is written."""
    out_path = Path(out_path)
    ensure_dir(out_path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        candidate = work / out_path.name
        verdict = measure_dynamic(
            fp32_path, calibration_samples, allow_conv=allow_conv, keep_dynamic=candidate, threads=threads
        )
        if not verdict.allowed:
            raise DynamicNotWorthIt(verdict.reason, hint="use static INT8 (edgekd quantize), or deploy FP32")
        place(candidate, out_path)
        return verdict
    finally:
        shutil.rmtree(work, ignore_errors=True)
