"""Building blocks of ONNX Runtime static quantization: the calibration reader, ORT's
pre-processing, one QDQ build (optionally with nodes kept in float), the integer-kernel
error probe and log silencing. ``ort_static`` and ``accuracy_aware`` compose them."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.export.onnx_export import check_frames_fit, ort_session, run_onnxruntime, short_reason
from edgekd.quantize.config import QuantizeConfig, QuantizeError
from edgekd.verbosity import is_verbose

CALIB_BATCH = 16  # frames per calibration call


class FrameReader:
    """CalibrationDataReader over ``frames`` ``[N, ...]`` in batches; ``set_range`` picks a
    slice of batches so ORT's strided collection folds partial results as it goes."""

    def __init__(self, frames: np.ndarray, input_name: str, batch: int) -> None:
        self.frames, self.input_name, self.batch = frames, input_name, batch
        self.count = math.ceil(len(frames) / batch)
        self.set_range(0, self.count)

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        start = self._next * self.batch
        self._next += 1
        return {self.input_name: self.frames[start : start + self.batch]}

    def __iter__(self):
        return iter(self.get_next, None)


def calibration_input(model: Path, calib: np.ndarray) -> tuple[Any, int | None]:
    """The model's input (ORT NodeArg) and its static batch size, None when the batch is dynamic;
    ShapeError when the calibration frames do not fit that input."""
    inp = ort_session(model).get_inputs()[0]
    check_frames_fit(inp.shape, calib, "calibration samples")
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    return inp, fixed


def narrow_input_convs(model: Path, max_channels: int = 4) -> list[str]:
    """Names of the Conv nodes that read a graph input of at most ``max_channels`` channels
    (the weight's input channels x groups), in graph order."""
    import onnx

    graph = onnx.load(os.fspath(model), load_external_data=False).graph
    inputs = {i.name for i in graph.input} - {init.name for init in graph.initializer}
    weights = {init.name: list(init.dims) for init in graph.initializer}
    names = []
    for node in graph.node:
        if node.op_type != "Conv" or not node.input or node.input[0] not in inputs or len(node.input) < 2:
            continue
        dims = weights.get(node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.name and dims is not None and len(dims) >= 2 and dims[1] * group <= max_channels:
            names.append(node.name)
    return names


def preprocess(src: Path, dst: Path) -> tuple[Path, str]:
    """Run quant_pre_process. Symbolic shape inference (made for transformer-style dynamic
    dims) is tried first; conv nets need only ONNX shape inference, so when the symbolic
    pass cannot handle an op it is skipped instead of failing the stage."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(os.fspath(src), os.fspath(dst))
        return dst, "optimised + symbolic and ONNX shape inference"
    except Exception as exc:  # symbolic inference raises assorted errors on ops it lacks
        first = short_reason(exc)
    try:
        quant_pre_process(os.fspath(src), os.fspath(dst), skip_symbolic_shape=True)
    except Exception as exc:
        raise QuantizeError(
            f"ONNX Runtime cannot pre-process {src} for quantization: {short_reason(exc)}",
            hint="check that ONNX Runtime runs the FP32 model",
        ) from None
    return dst, f"optimised + ONNX shape inference (symbolic shape inference skipped: {first})"


def quantize_qdq(
    src: Path,
    dst: Path,
    reader: FrameReader,
    activation: str,
    cfg: QuantizeConfig,
    reduce: bool,
    work: Path,
    exclude: list[str] | tuple[str, ...] = (),
    *,
    tensorrt: bool = False,
) -> Path:
    """One ORT ``quantize_static`` QDQ build of ``src`` into ``dst``; ``exclude`` names nodes kept
    in float. Float ranges are cached in ``work/ranges.json``: every build in ``work``
    after the first reuses them instead of calibrating again. ``tensorrt``: activations and
    weights symmetric (zero point 0) and biases left in float, the only Q/DQ form
    TensorRT's explicit quantization accepts (it has no int32 DequantizeLinear)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader.set_range(0, len(reader))

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    # Memory: the MinMax calibrator keeps only per-batch ReduceMin/ReduceMax scalars. The
    # histogram calibrators keep every batch's full activations and stack them (which also
    # fails on a short last batch), so they get ORT's strided collection with a stride of
    # one batch: each batch is folded into the running histograms and dropped.
    extra: dict[str, Any] = {} if cfg.calibration_method == "minmax" else {"CalibStridedMinMax": 1}
    if tensorrt:
        extra.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
    kwargs: dict[str, Any] = {}
    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        kwargs["calibration_cache_path"] = os.fspath(work / "ranges.json")
    try:
        quantize_static(
            os.fspath(src),
            os.fspath(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            reduce_range=reduce,
            activation_type=types[activation],
            weight_type=types[cfg.weight_type],
            calibrate_method=methods[cfg.calibration_method],
            extra_options=extra,
            nodes_to_exclude=list(exclude),
            **kwargs,
        )
    except Exception as exc:  # ORT raises ValueError/RuntimeError/its own Fail types
        raise QuantizeError(
            f"ONNX Runtime static quantization ({activation} activations) failed: {short_reason(exc)}",
            hint="try calibration_method: minmax or activation_type: uint8",
        ) from None
    return dst


def kernel_error(path: Path, reference: np.ndarray, frames: np.ndarray) -> dict[str, Any]:
    """Separate quantization error from integer-kernel error on this CPU (mean |Δlogit|).

    With graph optimisations off, ORT runs the QDQ graph as float DequantizeLinear ->
    float op -> QuantizeLinear: the ideal INT8 result. Optimised, it fuses integer
    kernels; a kernel error far above the quantization error means accumulator
    saturation (x86 without VNNI), which ``reduce_range`` avoids.
    """
    simulated = run_onnxruntime(ort_session(path, optimize=False), frames)
    kernels = run_onnxruntime(path, frames)
    quant = float(np.mean(np.abs(simulated - reference)))
    kernel = float(np.mean(np.abs(kernels - simulated)))
    return {
        "quantization_mean_abs": quant,
        "kernel_mean_abs": kernel,
        "saturation_suspected": bool(kernel > 2 * quant and kernel > 1e-3 and quant > 0),
    }


def saturation_text(error: dict[str, Any]) -> str:
    ratio = error["kernel_mean_abs"] / max(error["quantization_mean_abs"], 1e-12)
    return f"integer kernels on this CPU add {ratio:.1f}x the quantization error, accumulator saturation"


@contextlib.contextmanager
def quiet_logs(verbose: bool):
    """Hide ORT's quantizer chatter unless verbose: warnings through the root logger and
    progress ``print``s of the histogram calibrators.

    This lowers the process-wide root logger level for the duration; it is restored after.
    """
    if verbose or is_verbose():
        yield
        return
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(previous)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
