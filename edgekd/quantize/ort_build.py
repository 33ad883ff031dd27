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
import re
import shutil
import sys
import tempfile
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
    """Run quant_pre_process on ``src`` into ``dst``. Symbolic shape inference (made for
    transformer-style dynamic dims) is tried first; conv nets need only ONNX shape inference,
    so when the symbolic pass cannot handle an op it is skipped instead of failing the stage.

    ORT's pre-processing logs its own tracebacks, writes ``sym_shape_infer_temp.onnx`` into
    the working directory when symbolic inference is incomplete, and names its temporary
    files in errors: it runs in a private folder with its output captured, and a failure is
    one QuantizeError naming ``src``. InputFileError when ONNX Runtime cannot load ``src``.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    given, src, dst = src, Path(src).absolute(), Path(dst).absolute()  # absolute: the block runs elsewhere
    _require_ort_loads(given)
    try:
        with _private_run(dst.parent):
            quant_pre_process(os.fspath(src), os.fspath(dst))
        return dst, "optimised + symbolic and ONNX shape inference"
    except Exception as exc:  # symbolic inference raises assorted errors on ops it lacks
        first = _without_temporary_paths(short_reason(exc))
    try:
        with _private_run(dst.parent):
            quant_pre_process(os.fspath(src), os.fspath(dst), skip_symbolic_shape=True)
    except Exception as exc:
        reason = _without_temporary_paths(short_reason(exc))
        raise QuantizeError(
            f"ONNX Runtime cannot pre-process {given} for quantization: {reason}",
            hint="check that ONNX Runtime runs the FP32 model, or re-export it with `edgekd export`",
        ) from None
    return dst, f"optimised + ONNX shape inference (symbolic shape inference skipped: {first})"


# Paths of ORT's own temporary folders (``pre.quant.*``) and of ``_private_run``'s: they mean
# nothing to the user and are gone by the time the error is read.
_TEMPORARY_PATH = re.compile(r"\S*(?:pre\.quant\.|\.ort-preprocess\.)[^/\s]*/?")


def _without_temporary_paths(text: str) -> str:
    return _TEMPORARY_PATH.sub("<temporary folder>/", text)


def _require_ort_loads(src: Path) -> None:
    """InputFileError naming ``src`` when ONNX Runtime's CPU provider cannot load it: before
    pre-processing, whose own failure would name one of its temporary files."""
    from edgekd.errors import EdgeKDError, InputFileError

    try:
        ort_session(src)
    except EdgeKDError as exc:  # "ONNX Runtime cannot load <src>: <reason>"
        raise InputFileError(
            exc.message,
            hint="the graph uses an op or type ONNX Runtime's CPU provider lacks: re-export the model "
            "with `edgekd export`",
        ) from None


@contextlib.contextmanager
def _private_run(parent: Path):
    """Run a block in a fresh temporary working directory under ``parent`` with stdout,
    stderr (Python and file descriptors) and log records captured; yields the folder, which
    is removed afterwards with whatever the block left in it. The captured text is shown
    with ``--verbose``. The working directory is process-wide: not for concurrent threads."""
    folder = Path(tempfile.mkdtemp(prefix=".ort-preprocess.", dir=parent))
    previous = os.getcwd()
    sink = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 (closed below; append: Python and C++ share it)
    try:
        with _captured(sink):
            os.chdir(folder)
            try:
                yield folder
            finally:
                os.chdir(previous)
    finally:
        if is_verbose():
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
        sink.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _captured(sink: Any):
    """Send stdout, stderr (at the file-descriptor level too: ORT logs from C++) and log
    records of every logger into the binary file ``sink``."""
    text = io.TextIOWrapper(sink, encoding="utf-8", write_through=True)
    handler = logging.StreamHandler(text)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        root.handlers, root.level = [handler], logging.WARNING
        for fd in saved_fds:
            os.dup2(sink.fileno(), fd)
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            yield
    finally:
        text.flush()
        for fd, original in saved_fds.items():
            os.dup2(original, fd)
            os.close(original)
        root.handlers, root.level = saved_handlers, saved_level
        text.detach()


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
