"""ONNX Runtime static post-training INT8 in QDQ format, with measured choices.

Flow: ``quant_pre_process`` (ORT graph optimisation + shape inference) ->
``quantize_static`` calibrated on the given frames in small batches -> with
``reduce_range="auto"``, a probe of this CPU's integer kernels against float
emulation (re-quantize with 7-bit weights if they saturate) -> with
``activation_type="auto"``, uint8 and int8 activation variants timed at batch 1 and
the faster kept -> top-1 agreement with FP32 on the eval frames decides pass/fail ->
"did INT8 help?": speed-up and size against FP32 and op coverage (``assess``), a
warning when INT8 is not faster, an error with ``require_speedup``.
Everything intermediate lives in a temporary folder beside the output and is
removed; the output is renamed into place last.

The measurements describe the machine running this stage; another target CPU (ARM,
or x86 with VNNI) may rank the variants differently. (On x86, ORT 1.32's CPU provider
rewrites int8 activations to uint8 when it builds the session, so there the two
variants usually tie.)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, ensure_dir, require_file
from edgekd.errors import ParityError, ShapeError
from edgekd.export.onnx_export import (
    as_samples,
    check_frames_fit,
    load_onnx_checked,
    run_onnxruntime,
)
from edgekd.export.parity import ParityReport, require_finite_outputs
from edgekd.quantize.assess import CheckedReport, Int8Assessment, assess_int8, int8_agreement
from edgekd.quantize.config import NoSpeedupError, QuantizeConfig, QuantizeError
from edgekd.quantize.coverage import describe_quantized, op_coverage
from edgekd.quantize.ort_build import (
    CALIB_BATCH,
    FrameReader,
    calibration_input,
    kernel_error,
    narrow_input_convs,
    preprocess,
    quantize_qdq,
    quiet_logs,
    saturation_text,
)
from edgekd.quantize.timing import time_batch1
from edgekd.runtime.threads import default_threads

# Kept importable from here: the pipeline, the CLI and older callers use these names.
__all__ = [
    "NoSpeedupError",
    "QuantizeConfig",
    "QuantizeError",
    "QuantizeReport",
    "describe_quantized",
    "quantize_onnx_static",
    "time_batch1",
]

_FrameReader = FrameReader  # the old private name, used by tests
_PROBE_FRAMES = 64  # calibration frames used to probe the integer kernels for saturation
_TIE = 0.10  # closer medians are run-to-run noise on a shared CPU: keep uint8 (x86 ORT's native type)


@dataclass
class QuantizeReport(CheckedReport):
    """What was built and why. Times are median milliseconds per batch-1 inference
    with ``threads`` intra-op threads; ``kernel_error`` is in logit units;
    ``assessment``: speed-up, size ratio and op coverage against FP32;
    ``float_nodes``: nodes deliberately kept in float (the narrow input convolution, the
    accuracy-aware fallback)."""

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
    assessment: Int8Assessment | None = None
    float_nodes: list[str] = dataclasses.field(default_factory=list)


def quantize_onnx_static(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    cfg: QuantizeConfig,
    *,
    eval_samples: np.ndarray | None = None,
    nodes_to_exclude: Sequence[str] = (),
    verbose: bool = False,
    threads: int | None = None,
) -> QuantizeReport:
    """Quantize ``fp32_path`` to static INT8 (QDQ) at ``out_path``.

    Args:
        fp32_path: FP32 ONNX model with one input (e.g. ``[batch, 2, 128]``).
        out_path: target file; replaced only when everything passed.
        calibration_samples: float32 ``[N, ...]`` frames to calibrate activation ranges.
        cfg: see QuantizeConfig.
        eval_samples: float32 ``[M, ...]`` frames on which INT8 top-1 must agree with FP32.
        nodes_to_exclude: node names (of the pre-processed graph) kept in float.
        verbose: let ORT's quantizer logs and prints through.
        threads: intra-op threads FP32 and INT8 are timed with (the count the model will run
            with); None: every core this process may use.

    Raises:
        InputFileError: fp32_path missing or not ONNX. ShapeError: bad frames.
        QuantizeError: ORT's quantizer failed. ParityError: FP32 or INT8 outputs hold
        NaN/Inf, or agreement below ``cfg.min_top1_agreement``. NoSpeedupError: INT8 not faster with
        ``cfg.require_speedup``. Nothing is left at ``out_path`` or beside it then.
    """
    cfg.validate()
    fp32_path = require_file(fp32_path, "ONNX model", hint="run `edgekd export` first")
    load_onnx_checked(fp32_path)
    calib = as_samples(calibration_samples, "calibration samples")
    evals = as_samples(eval_samples, "eval samples") if eval_samples is not None else None
    out_path = Path(out_path)
    ensure_dir(out_path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        with quiet_logs(verbose):
            build = _build(fp32_path, work, calib, evals, cfg, list(nodes_to_exclude))
        report = _measure(build, cfg, threads if threads is not None else default_threads())
        with atomic_path(out_path) as tmp:
            os.replace(build.variants[report.activation_type], tmp)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Build:
    """The QDQ variants of one model and what measuring them needs: the FP32 model, its
    outputs on the eval frames (else a calibration probe), the frames fitted to its input."""

    fp32: Path
    variants: dict[str, Path]
    reduce: bool
    reasons: list[str]
    calib: np.ndarray
    evals: np.ndarray | None
    reference: np.ndarray
    batch: int
    preprocess: str
    exclude: list[str]


def _build(
    fp32_path: Path,
    work: Path,
    calib: np.ndarray,
    evals: np.ndarray | None,
    cfg: QuantizeConfig,
    exclude: list[str],
) -> _Build:
    """Pre-process ``fp32_path`` and build every activation-type variant in ``work``."""
    pre, note = preprocess(fp32_path, work / "pre.onnx")
    inp, fixed, calib, evals = _fit_frames(pre, calib, evals)
    reference = _fp32_reference(fp32_path, calib, evals, fixed or 1)
    frames = FrameReader(calib, inp.name, fixed or CALIB_BATCH)
    if cfg.float_input_conv:  # see QuantizeConfig: slower and less exact in INT8 here
        exclude += [name for name in narrow_input_convs(pre) if name not in exclude]
    built, reduce, reasons = _build_measured(
        pre, work, frames, _candidates(cfg), cfg, fp32_path, fixed or 1, exclude
    )
    return _Build(fp32_path, built, reduce, reasons, calib, evals, reference, fixed or 1, note, exclude)


def _measure(build: _Build, cfg: QuantizeConfig, threads: int) -> QuantizeReport:
    """Time the variants against FP32, keep one, check its agreement and assess it."""
    report = QuantizeReport(
        activation_type=next(iter(build.variants)),
        weight_type=cfg.weight_type,
        per_channel=cfg.per_channel,
        calibration_method=cfg.calibration_method,
        calibration_samples=len(build.calib),
        choice_reason=f"activation_type {cfg.activation_type} set in the config",
        reduce_range=build.reduce,
        threads=threads,
        preprocess=build.preprocess,
        float_nodes=build.exclude,
    )
    # Every variant is timed against FP32 on one frame: the choice in "auto" and the
    # "did INT8 help?" verdict come from the same interleaved measurement.
    timed = time_batch1({"fp32": build.fp32, **build.variants}, build.calib[: build.batch], threads)
    report.fp32_ms = timed.pop("fp32")
    report.timings_ms = timed
    if cfg.activation_type == "auto":
        report.activation_type, report.choice_reason = _pick_faster(timed)
    report.choice_reason = "; ".join([report.choice_reason, *build.reasons])
    if build.evals is not None:
        _check_agreement(
            report, build.variants, build.fp32, build.reference, build.evals, cfg.min_top1_agreement
        )
    chosen = build.variants[report.activation_type]
    report.assessment = assess_int8(
        build.fp32,
        chosen,
        report.fp32_ms,
        timed[report.activation_type],
        threads,
        coverage=op_coverage(chosen),
        require_speedup=cfg.require_speedup,
    )
    return report


def _fit_frames(
    pre: Path, calib: np.ndarray, evals: np.ndarray | None
) -> tuple[Any, int | None, np.ndarray, np.ndarray | None]:
    """The model's input (ORT NodeArg) and static batch (None when dynamic), and the frames
    checked against that input, cut to whole batches when the batch is static."""
    inp, fixed = calibration_input(pre, calib)
    if evals is not None:
        check_frames_fit(inp.shape, evals, "eval samples")
    if fixed:  # a static batch takes exactly `fixed` frames per call: drop the remainder
        calib = whole_batches(calib, fixed, "calibration samples")
        evals = whole_batches(evals, fixed, "eval samples") if evals is not None else None
    return inp, fixed, calib, evals


def _fp32_reference(fp32_path: Path, calib: np.ndarray, evals: np.ndarray | None, batch: int) -> np.ndarray:
    """FP32 outputs on ``evals`` (else on a probe of calibration frames, whole batches of
    ``batch``), refused at the door when NaN/Inf: such a model has nothing to quantize against."""
    probe = calib[: max(batch, _PROBE_FRAMES - _PROBE_FRAMES % batch)]
    reference = run_onnxruntime(fp32_path, evals if evals is not None else probe)
    require_finite_outputs(reference, f"FP32 model {fp32_path}")
    return reference


def whole_batches(frames: np.ndarray, batch: int, what: str) -> np.ndarray:
    """The first ``len(frames) // batch * batch`` frames; ShapeError when that is none."""
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
    report: QuantizeReport,
    built: dict[str, Path],
    fp32_path: Path,
    reference: np.ndarray,
    evals: np.ndarray,
    minimum: float,
) -> None:
    """Top-1 agreement of the chosen INT8 variant with FP32 (``reference``, its outputs on
    ``evals``) decides. When the faster variant fails but the other passes, the other is
    kept (and the reason says so)."""

    def compare(variant: str) -> ParityReport:
        return int8_agreement(
            reference,
            run_onnxruntime(built[variant], evals),
            minimum,
            "INT8 vs FP32",
            reference_name=f"FP32 model {fp32_path}",
            candidate_name=f"the INT8 model ({variant} activations)",
        )

    chosen = report.activation_type
    report.parity = compare(chosen)
    for other in (name for name in built if name != chosen and not report.parity.passed):
        second = compare(other)
        if second.passed:
            report.choice_reason += (
                f"; but {chosen} failed top-1 agreement ({report.parity.top1_agreement:.2%}), "
                f"so {other} ({second.top1_agreement:.2%}) was kept"
            )
            report.activation_type, report.parity = other, second
    report.kernel_error = kernel_error(built[report.activation_type], reference, evals)
    if report.parity.nonfinite_candidate:
        report.parity.raise_if_failed()  # NaN/Inf: its own message and hint, not a tuning matter
    try:
        report.parity.raise_if_failed()
    except ParityError as exc:
        exc.hint = (
            f"set quantize.reduce_range: true ({saturation_text(report.kernel_error)})"
            if report.kernel_error["saturation_suspected"]
            else "calibrate on more representative frames, try calibration_method: entropy or percentile, "
            "quantize.accuracy_aware: true, or lower quantize.min_top1_agreement (--min-top1-agreement)"
        )
        raise


def _build_measured(
    src: Path,
    work: Path,
    frames: FrameReader,
    variants: list[str],
    cfg: QuantizeConfig,
    fp32: Path,
    batch: int,
    exclude: list[str],
) -> tuple[dict[str, Path], bool, list[str]]:
    """Build the variants; with ``reduce_range="auto"`` probe the first one's integer kernels
    on a few calibration frames and rebuild with 7-bit weights when they saturate.
    Returns (variant -> path, reduce_range applied, reasons for the report)."""
    reduce = cfg.reduce_range is True
    built = _build_variants(src, work, frames, variants, cfg, reduce, exclude)
    if cfg.reduce_range != "auto":
        return built, reduce, []
    probe = frames.frames[: max(batch, _PROBE_FRAMES - _PROBE_FRAMES % batch)]
    error = kernel_error(built[variants[0]], run_onnxruntime(fp32, probe), probe)
    if not error["saturation_suspected"]:
        return built, False, []
    built = _build_variants(src, work, frames, variants, cfg, True, exclude)
    return built, True, [f"reduce_range on: {saturation_text(error)}"]


def _build_variants(
    src: Path,
    work: Path,
    frames: FrameReader,
    variants: list[str],
    cfg: QuantizeConfig,
    reduce: bool,
    exclude: list[str],
) -> dict[str, Path]:
    """One quantized model per activation type, ``work/<type>.onnx``; calibration runs once
    when ORT supports a calibration cache (the float ranges do not depend on the type)."""
    return {
        name: quantize_qdq(src, work / f"{name}.onnx", frames, name, cfg, reduce, work, exclude)
        for name in variants
    }
