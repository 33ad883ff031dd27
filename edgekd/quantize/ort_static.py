"""ONNX Runtime static post-training INT8 in QDQ format, with measured choices.

Flow: ``quant_pre_process`` (ORT graph optimisation + shape inference) ->
``quantize_static`` calibrated on the given frames in small batches -> with
``reduce_range="auto"``, a probe of this CPU's integer kernels against float
emulation (re-quantize with 7-bit weights if they saturate) -> with
``activation_type="auto"``, uint8 and int8 activation variants timed at batch 1 and
the faster kept -> top-1 agreement with FP32 on the eval frames decides pass/fail.
Everything intermediate lives in a temporary folder beside the output and is
removed; the output is renamed into place last.

The measurements describe the machine running this stage; another target CPU (ARM,
or x86 with VNNI) may rank the variants differently. (On x86, ORT 1.32's CPU provider
rewrites int8 activations to uint8 when it builds the session, so there the two
variants usually tie.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgekd.artifacts import atomic_path, require_file
from edgekd.errors import ConfigError, EdgeKDError, ParityError, ShapeError
from edgekd.export.onnx_export import (
    as_samples,
    check_frames_fit,
    load_onnx_checked,
    ort_session,
    run_onnxruntime,
    short_reason,
)
from edgekd.export.parity import ParityConfig, ParityReport, compare_outputs

_CALIB_BATCH = 16  # frames per calibration call
_PROBE_FRAMES = 64  # calibration frames used to probe the integer kernels for saturation
_TIMING_WARMUP = 25
_TIMING_ROUNDS, _TIMING_PER_ROUND = 20, 15  # 300 timed runs per variant, interleaved in short rounds
_TIE = 0.10  # closer medians are run-to-run noise on a shared CPU: keep uint8 (x86 ORT's native type)


class QuantizeError(EdgeKDError):
    """ONNX Runtime's quantizer rejected the model."""


@dataclass
class QuantizeConfig:
    """Static INT8 settings.

    ``activation_type``: "auto" builds uint8 and int8 activations and keeps the faster
    on this CPU. ``reduce_range``: 7-bit weights, which avoids int16 saturation in the
    U8S8 kernels of x86 CPUs without VNNI (AVX2 only) at the cost of one bit of weight
    precision; "auto" turns it on only when a probe measures saturation here.
    ``calibration``: calibration recipe name or path, resolved by the caller.
    ``min_top1_agreement``: fraction in [0, 1] of eval frames whose INT8 argmax must
    equal FP32's. ``max_accuracy_drop``: the most labelled accuracy (a fraction, 0.02 =
    two points) INT8 may lose against FP32 on the validation split; checked by the
    pipeline stage, which has the labels. On noisy data (low-SNR radio frames) many
    frames sit near a decision boundary, so agreement is loose and accuracy decides.
    """

    activation_type: Literal["auto", "uint8", "int8"] = "auto"
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = True
    reduce_range: Literal["auto"] | bool = "auto"
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration: str = "modrec-stratified-snr"
    min_top1_agreement: float = 0.9
    max_accuracy_drop: float | None = 0.02

    def validate(self) -> None:
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ConfigError(
                f"quantize.max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}",
                hint="it is a fraction: 0.02 allows two points of accuracy lost to INT8",
            )
        if not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ConfigError(
                f"quantize.min_top1_agreement must be in [0, 1], got {self.min_top1_agreement}",
                hint="it is the fraction of eval frames whose class must not change, e.g. 0.9",
            )
        if self.activation_type == "int8" and self.weight_type == "uint8":
            raise ConfigError(
                "quantize: int8 activations with uint8 weights is not a format ONNX Runtime supports",
                hint="use weight_type: int8",
            )
        if not str(self.calibration).strip():
            raise ConfigError("quantize.calibration is empty", hint="name a calibration recipe")


@dataclass
class QuantizeReport:
    """What was built and why. Times are median milliseconds per batch-1 inference
    with ``threads`` intra-op threads; ``kernel_error`` is in logit units."""

    activation_type: str
    weight_type: str
    per_channel: bool
    calibration_method: str
    calibration_samples: int
    choice_reason: str
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    fp32_ms: float | None = None
    parity: ParityReport | None = None
    reduce_range: bool = False
    threads: int = 1
    preprocess: str = ""
    kernel_error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["parity"] = self.parity.to_dict() if self.parity else None
        return data


class _FrameReader:
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


def quantize_onnx_static(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    cfg: QuantizeConfig,
    *,
    eval_samples: np.ndarray | None = None,
    verbose: bool = False,
) -> QuantizeReport:
    """Quantize ``fp32_path`` to static INT8 (QDQ) at ``out_path``.

    Args:
        fp32_path: FP32 ONNX model with one input (e.g. ``[batch, 2, 128]``).
        out_path: target file; replaced only when everything passed.
        calibration_samples: float32 ``[N, ...]`` frames to calibrate activation ranges.
        cfg: see QuantizeConfig.
        eval_samples: float32 ``[M, ...]`` frames on which INT8 top-1 must agree with FP32.
        verbose: let ORT's quantizer logs and prints through.

    Raises:
        InputFileError: fp32_path missing or not ONNX. ShapeError: bad frames.
        QuantizeError: ORT's quantizer failed. ParityError: agreement below
        ``cfg.min_top1_agreement``. Nothing is left at ``out_path`` or beside it then.
    """
    cfg.validate()
    fp32_path = require_file(fp32_path, "ONNX model", hint="run `edgekd export` first")
    load_onnx_checked(fp32_path)
    calib = as_samples(calibration_samples, "calibration samples")
    evals = as_samples(eval_samples, "eval samples") if eval_samples is not None else None
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        with _quiet_logs(verbose):
            pre, note = _preprocess(fp32_path, work / "pre.onnx")
            inp = ort_session(pre).get_inputs()[0]
            check_frames_fit(inp.shape, calib, "calibration samples")
            if evals is not None:
                check_frames_fit(inp.shape, evals, "eval samples")
            fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
            if fixed:  # a static batch takes exactly `fixed` frames per call: drop the remainder
                calib = _whole_batches(calib, fixed, "calibration samples")
                evals = _whole_batches(evals, fixed, "eval samples") if evals is not None else None
            variants = _candidates(cfg)
            frames = _FrameReader(calib, inp.name, fixed or _CALIB_BATCH)
            built, reduce, reasons = _build_measured(pre, work, frames, variants, cfg, fp32_path, fixed or 1)

        threads = _cpu_count()
        report = QuantizeReport(
            activation_type=variants[0],
            weight_type=cfg.weight_type,
            per_channel=cfg.per_channel,
            calibration_method=cfg.calibration_method,
            calibration_samples=len(calib),
            choice_reason=f"activation_type {cfg.activation_type} set in the config",
            reduce_range=reduce,
            threads=threads,
            preprocess=note,
        )
        if cfg.activation_type == "auto":
            timed = time_batch1({"fp32": fp32_path, **built}, calib[: fixed or 1], threads)
            report.fp32_ms = timed.pop("fp32")
            report.timings_ms = timed
            report.activation_type, report.choice_reason = _pick_faster(timed)
        report.choice_reason = "; ".join([report.choice_reason, *reasons])
        if evals is not None:
            _check_agreement(report, built, fp32_path, evals, cfg.min_top1_agreement)

        with atomic_path(out_path) as tmp:
            os.replace(built[report.activation_type], tmp)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def time_batch1(
    models: dict[str, str | os.PathLike[str]], frame: np.ndarray, threads: int
) -> dict[str, float]:
    """Median latency in ms of each ONNX model on ``frame`` (``[1, ...]``), single stream, CPU.

    Runs are interleaved round by round so slow drift of a shared CPU (turbo, noisy
    neighbours) hits every model alike instead of whichever happened to run last.
    """
    sessions = {name: ort_session(path, threads=threads) for name, path in models.items()}
    feeds = {name: {s.get_inputs()[0].name: frame} for name, s in sessions.items()}
    for name, session in sessions.items():
        for _ in range(_TIMING_WARMUP):
            session.run(None, feeds[name])
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(_TIMING_ROUNDS):
        for name, session in sessions.items():
            for _ in range(_TIMING_PER_ROUND):
                start = time.perf_counter()
                session.run(None, feeds[name])
                samples[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(values) * 1e3, 5) for name, values in samples.items()}


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


def _whole_batches(frames: np.ndarray, batch: int, what: str) -> np.ndarray:
    keep = len(frames) - len(frames) % batch
    if keep == 0:
        raise ShapeError(
            f"the model's batch size is fixed to {batch}, but only {len(frames)} {what} were given",
            hint=f"pass at least {batch} frames or export with dynamic_batch: true",
        )
    return frames[:keep]


def _candidates(cfg: QuantizeConfig) -> list[str]:
    if cfg.activation_type != "auto":
        return [cfg.activation_type]
    # ORT has no kernels for int8 activations with uint8 weights; only uint8 is possible then.
    return ["uint8"] if cfg.weight_type == "uint8" else ["uint8", "int8"]


def _pick_faster(timed: dict[str, float]) -> tuple[str, str]:
    if len(timed) == 1:
        return "uint8", "auto: only uint8 activations exist for uint8 weights in ONNX Runtime"
    u8, s8 = timed["uint8"], timed["int8"]
    measured = f"uint8 {u8:.4g} ms vs int8 {s8:.4g} ms at batch 1"
    if s8 < u8 * (1 - _TIE):
        return "int8", f"auto: int8 activations measured faster on this CPU ({measured})"
    if u8 < s8 * (1 - _TIE):
        return "uint8", f"auto: uint8 activations measured faster on this CPU ({measured})"
    return "uint8", f"auto: within {_TIE:.0%} on this CPU ({measured}); kept uint8, ORT's native x86 type"


def _check_agreement(
    report: QuantizeReport, built: dict[str, Path], fp32_path: Path, evals: np.ndarray, minimum: float
) -> None:
    """Top-1 agreement of the chosen INT8 variant with FP32 on ``evals`` decides. When the
    faster variant fails but the other passes, the other is kept (and the reason says so)."""
    reference = run_onnxruntime(fp32_path, evals)
    # INT8 logits legitimately differ by a few quantization steps: only agreement decides.
    rule = ParityConfig(atol=math.inf, rtol=0.0, min_top1_agreement=minimum)
    chosen = report.activation_type
    report.parity = compare_outputs(reference, run_onnxruntime(built[chosen], evals), rule, "INT8 vs FP32")
    for other in (name for name in built if name != chosen and not report.parity.passed):
        second = compare_outputs(reference, run_onnxruntime(built[other], evals), rule, "INT8 vs FP32")
        if second.passed:
            report.choice_reason += (
                f"; but {chosen} failed top-1 agreement ({report.parity.top1_agreement:.2%}), "
                f"so {other} ({second.top1_agreement:.2%}) was kept"
            )
            report.activation_type, report.parity = other, second
    report.kernel_error = _kernel_error(built[report.activation_type], reference, evals)
    try:
        report.parity.raise_if_failed()
    except ParityError as exc:
        exc.hint = (
            f"set quantize.reduce_range: true ({_saturation_text(report.kernel_error)})"
            if report.kernel_error["saturation_suspected"]
            else "calibrate on more representative frames, try calibration_method: entropy or percentile, "
            "or lower quantize.min_top1_agreement"
        )
        raise


def _kernel_error(path: Path, reference: np.ndarray, frames: np.ndarray) -> dict[str, Any]:
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


def _saturation_text(error: dict[str, Any]) -> str:
    ratio = error["kernel_mean_abs"] / max(error["quantization_mean_abs"], 1e-12)
    return f"integer kernels on this CPU add {ratio:.1f}x the quantization error, accumulator saturation"


def _preprocess(src: Path, dst: Path) -> tuple[Path, str]:
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


def _build_measured(
    src: Path,
    work: Path,
    frames: _FrameReader,
    variants: list[str],
    cfg: QuantizeConfig,
    fp32: Path,
    batch: int,
) -> tuple[dict[str, Path], bool, list[str]]:
    """Build the variants; with ``reduce_range="auto"`` probe the first one's integer kernels
    on a few calibration frames and rebuild with 7-bit weights when they saturate.
    Returns (variant -> path, reduce_range applied, reasons for the report)."""
    reduce = cfg.reduce_range is True
    built = _build_variants(src, work, frames, variants, cfg, reduce)
    if cfg.reduce_range != "auto":
        return built, reduce, []
    probe = frames.frames[: max(batch, _PROBE_FRAMES - _PROBE_FRAMES % batch)]
    error = _kernel_error(built[variants[0]], run_onnxruntime(fp32, probe), probe)
    if not error["saturation_suspected"]:
        return built, False, []
    built = _build_variants(src, work, frames, variants, cfg, True)
    return built, True, [f"reduce_range on: {_saturation_text(error)}"]


def _build_variants(
    src: Path, work: Path, frames: _FrameReader, variants: list[str], cfg: QuantizeConfig, reduce: bool
) -> dict[str, Path]:
    """One quantized model per activation type, ``work/<type>.onnx``; calibration runs once
    when ORT supports a calibration cache (the float ranges do not depend on the type)."""
    built = {}
    for activation in variants:
        frames.set_range(0, len(frames))
        built[activation] = _quantize(src, work / f"{activation}.onnx", frames, activation, cfg, reduce, work)
    return built


def _quantize(
    src: Path, dst: Path, reader: _FrameReader, activation: str, cfg: QuantizeConfig, reduce: bool, work: Path
) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

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
    extra = {} if cfg.calibration_method == "minmax" else {"CalibStridedMinMax": 1}
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
            **kwargs,
        )
    except Exception as exc:  # ORT raises ValueError/RuntimeError/its own Fail types
        raise QuantizeError(
            f"ONNX Runtime static quantization ({activation} activations) failed: {short_reason(exc)}",
            hint="try calibration_method: minmax or activation_type: uint8",
        ) from None
    return dst


@contextlib.contextmanager
def _quiet_logs(verbose: bool):
    """Hide ORT's quantizer chatter unless verbose: warnings through the root logger and
    progress ``print``s of the histogram calibrators.

    This lowers the process-wide root logger level for the duration; it is restored after.
    """
    if verbose:
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


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
