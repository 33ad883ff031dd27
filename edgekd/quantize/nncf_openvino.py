"""OpenVINO INT8 through NNCF: ``nncf.quantize`` (post-training) and
``nncf.quantize_with_accuracy_control`` (reverts layers to float until the drop on labelled
validation frames is within ``max_drop``), checked like the ONNX Runtime path.

Calibration frames come from the calibration recipe (the caller selects them); each NNCF
data item is one frame ``[1, ...]``, NNCF's recommended batch for statistics. The
quantized IR is compiled on the CPU plugin and must agree (top-1) with the FP32 model;
it is labelled with the precision the plugin really executes (``u8``/``i8`` for the
quantized convolutions). Written as an ``.xml``/``.bin`` pair, ``.bin`` first.

Tested with nncf 3.4.0 beside openvino 2026.4 (``nncf>=3.0,<4``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import ensure_dir, place, require_file
from edgekd.errors import RuntimeUnavailable, ShapeError
from edgekd.export.onnx_export import as_samples, check_frames_fit, short_reason
from edgekd.export.parity import ParityReport
from edgekd.quantize.assess import CheckedReport, Int8Assessment, assess_int8, int8_agreement
from edgekd.quantize.config import QuantizeConfig, QuantizeError
from edgekd.quantize.timing import time_openvino_batch1
from edgekd.runtime.threads import default_threads
from edgekd.verbosity import is_verbose

NNCF_BOUND = "nncf>=3.0,<4"
_COMPUTE = {"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData"}


@dataclass
class OpenVINOQuantizeReport(CheckedReport):
    """``precision``: what the CPU plugin executes the INT8 IR in; ``accuracy``: FP32/INT8
    top-1 on the validation frames (accuracy control only); ``parity``: INT8 vs FP32 agreement;
    ``int8_layers``/``float_layers``: convolutions and matmuls with quantized weights, and those
    left in float (by NNCF's patterns or reverted by accuracy control)."""

    nncf_version: str
    calibration_samples: int
    accuracy_control: bool
    precision: str
    parity: ParityReport | None = None
    assessment: Int8Assessment | None = None
    accuracy: dict[str, float] | None = None
    int8_layers: list[str] = dataclasses.field(default_factory=list)
    float_layers: list[str] = dataclasses.field(default_factory=list)


def quantize_openvino(
    model_path: str | os.PathLike[str],
    out_xml: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    cfg: QuantizeConfig,
    *,
    eval_samples: np.ndarray | None = None,
    val_samples: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    validation: LabelledFrames | None = None,
    threads: int | None = None,
) -> OpenVINOQuantizeReport:
    """INT8-quantize an FP32 OpenVINO IR (``.xml``) or ONNX model with NNCF into ``out_xml``.

    Args:
        model_path: FP32 ``.xml`` (with its ``.bin``) or ``.onnx``, one input.
        out_xml: target ``.xml``; the weights go to the same name with ``.bin``.
        calibration_samples: float32 ``[N, ...]`` frames from the calibration recipe.
        cfg: ``calibration_method`` (activation ranges, see ``nncf_range_parameters``),
            ``min_top1_agreement``, ``require_speedup`` and, for accuracy control,
            ``max_accuracy_drop`` (absolute, a fraction) are used.
        eval_samples: float32 ``[M, ...]`` frames on which INT8 top-1 must agree with FP32.
        val_samples, val_labels: labelled validation frames ``[V, ...]``/``[V]``; when given,
            ``nncf.quantize_with_accuracy_control`` runs with ``max_drop=cfg.max_accuracy_drop``.
        validation: the labelled validation frames as a dataset streamed frame by frame
            (:class:`LabelledFrames`, for a split larger than memory), instead of
            ``val_samples``/``val_labels``.
        threads: CPU threads FP32 and INT8 are timed with; None: every core this process may use.

    Raises:
        RuntimeUnavailable: nncf or openvino missing. QuantizeError: NNCF failed.
        ParityError: INT8 agreement below ``cfg.min_top1_agreement``. NoSpeedupError: not
        faster with ``cfg.require_speedup``. Nothing is left at ``out_xml`` then.
    """
    cfg.validate()
    nncf, ov = _import_nncf()
    model_path = require_file(model_path, "FP32 model", hint="run `edgekd export` first")
    calib = as_samples(calibration_samples, "calibration samples")
    validation = _validation(val_samples, val_labels, validation)
    out_xml = Path(out_xml)
    if out_xml.suffix != ".xml":
        raise ShapeError(f"OpenVINO IR path {out_xml} must end in .xml", hint="name it e.g. student.int8.xml")
    ensure_dir(out_xml.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out_xml.name}.", dir=out_xml.parent))
    try:
        fp32 = ov.Core().read_model(os.fspath(model_path))
        dims = [d.get_length() if d.is_static else None for d in fp32.inputs[0].get_partial_shape()]
        check_frames_fit(dims, calib, "calibration samples")
        # Saved before NNCF runs: the FP32 reference is timed and compared as an IR too.
        fp32_xml = work / "fp32.xml"
        ov.save_model(fp32, os.fspath(fp32_xml), compress_to_fp16=False)
        control = validation is not None
        report = OpenVINOQuantizeReport(str(nncf.__version__), len(calib), control, precision="")
        try:
            with _quiet_nncf(nncf):
                int8 = _run_nncf(nncf, fp32, calib, cfg, validation)
        except Exception as exc:  # NNCF raises its own errors and assorted runtime ones
            raise QuantizeError(
                f"NNCF quantization of {model_path.name} failed: {short_reason(exc)}",
                hint="check that the FP32 model runs on OpenVINO's CPU plugin",
            ) from None
        report.int8_layers, report.float_layers = weight_precision_layers(int8)
        tmp_xml = work / out_xml.name
        ov.save_model(int8, os.fspath(tmp_xml), compress_to_fp16=False)
        _verify(report, fp32_xml, tmp_xml, model_path, cfg, eval_samples, validation)
        report.assessment = _assess(fp32_xml, tmp_xml, calib[:1], cfg, threads)
        place(tmp_xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        place(tmp_xml, out_xml)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _assess(
    fp32_xml: Path, int8_xml: Path, frame: np.ndarray, cfg: QuantizeConfig, threads: int | None
) -> Int8Assessment:
    """INT8 timed against FP32 on ``frame`` ``[1, ...]`` with ``threads`` (None:
    ``default_threads()``), plus sizes: see :func:`assess_int8`."""
    threads = threads if threads is not None else default_threads()
    timed = time_openvino_batch1({"fp32": fp32_xml, "int8": int8_xml}, frame, threads)
    return assess_int8(
        fp32_xml,
        int8_xml,
        timed["fp32"],
        timed["int8"],
        threads,
        require_speedup=cfg.require_speedup,
        runtime="OpenVINO",
    )


def _validation(
    val_samples: np.ndarray | None, val_labels: np.ndarray | None, validation: LabelledFrames | None
) -> Any:
    """The labelled validation items accuracy control reads, from either form; None without."""
    if val_samples is None:
        return validation
    if validation is not None:
        raise ShapeError("pass validation frames once: val_samples or validation, not both")
    if val_labels is None or len(val_labels) != len(val_samples):
        raise ShapeError(
            "accuracy-controlled quantization needs one label per validation frame",
            hint="pass val_labels of the same length as val_samples",
        )
    return _labelled_items(val_samples, val_labels)


def _verify(
    report: OpenVINOQuantizeReport,
    fp32_xml: Path,
    int8_xml: Path,
    model_path: Path,
    cfg: QuantizeConfig,
    eval_samples: np.ndarray | None,
    validation: Any,
) -> None:
    """The precision the CPU plugin runs the INT8 IR in, both accuracies under accuracy
    control, and INT8's top-1 agreement with FP32 on ``eval_samples`` (ParityError below
    ``cfg.min_top1_agreement``)."""
    from edgekd.export.openvino_export import compile_cpu, openvino_execution_precision

    compiled = compile_cpu(int8_xml, precision="f32")
    report.precision = openvino_execution_precision(compiled)
    fp32_compiled = compile_cpu(fp32_xml, precision="f32")
    if validation is not None:
        report.accuracy = {"fp32": _top1(fp32_compiled, validation), "int8": _top1(compiled, validation)}
    if eval_samples is None:
        return
    evals = as_samples(eval_samples, "eval samples")
    report.parity = int8_agreement(
        _infer(fp32_compiled, evals),
        _infer(compiled, evals),
        cfg.min_top1_agreement,
        "OpenVINO INT8 vs FP32",
        reference_name=f"FP32 model {model_path}",
        candidate_name="the OpenVINO INT8 model",
    )
    report.parity.raise_if_failed()


def _run_nncf(
    nncf: Any,
    fp32: Any,
    calib: np.ndarray,
    cfg: QuantizeConfig,
    items: Any,
) -> Any:
    """``items``: None (post-training quantization), or the labelled validation frames
    ``(frame [1, ...], label)``, a list or a :class:`LabelledFrames` (accuracy control)."""
    calibration = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    advanced = nncf_range_parameters(cfg.calibration_method)
    if items is None:
        return nncf.quantize(fp32, calibration, subset_size=len(calib), advanced_parameters=advanced)
    validation = nncf.Dataset(items, lambda item: item[0])
    budget = cfg.max_accuracy_drop if cfg.max_accuracy_drop is not None else 0.01
    return nncf.quantize_with_accuracy_control(
        fp32,
        calibration,
        validation,
        _top1,
        max_drop=budget,
        subset_size=len(calib),
        advanced_quantization_parameters=advanced,
    )


def nncf_range_parameters(method: str) -> Any:
    """NNCF advanced parameters whose activation ranges follow ``quantize.calibration_method``.

    NNCF's own default averages the per-frame minima and maxima (one frame per item), which
    clips every frame louder than the average one. On the synthetic modulation student that
    cost 1.1 points (38.54% vs 39.64% FP32, 90% top-1 agreement); the global extremes, as
    ONNX Runtime's "minmax" takes them, lost 0.1 (98% agreement) on the same 256 frames.
    Only "minmax" changes NNCF's ranges: NNCF has no entropy calibration, and its mean of
    per-frame quantiles (the nearest to "percentile") lost 34 points on the MobileNetV2 image
    student of ``benchmarks/quantize.py``, so "entropy" and "percentile" keep NNCF's default.
    """
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if method != "minmax":
        return AdvancedQuantizationParameters()
    return AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
    )


def weight_precision_layers(model: Any) -> tuple[list[str], list[str]]:
    """Friendly names of Convolution/GroupConvolution/MatMul ops in an ``ov.Model`` whose weight
    is stored quantized (reached through a decompression Multiply/Convert or a FakeQuantize)
    and of those whose weight is a plain float Constant."""
    int8, float_ = [], []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _COMPUTE or op.get_input_size() < 2:
            continue
        weight = op.input_value(1).get_node()
        is_float = weight.get_type_name() == "Constant" and weight.get_element_type().is_real()
        (float_ if is_float else int8).append(op.get_friendly_name())
    return int8, float_


class LabelledFrames:
    """The frames of a dataset (an ArrayDataset or a map-style dataset) as NNCF validation
    items ``(frame float32 [1, ...], label)``, read batch by batch on every pass (NNCF makes
    several), so a validation split larger than memory is never held whole. Sized and
    re-iterable; raw image pixels are normalised as the network takes them. Read in this
    process (``workers`` 0) by default: workers forked beside OpenVINO's thread pool are not
    safe (see :func:`edgekd.bench.accuracy.evaluate_accuracy`)."""

    def __init__(self, dataset: Any, batch_size: int = 256, workers: int | str | None = 0) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        from edgekd.data.batches import network_batches

        for x, y, _ in network_batches(self.dataset, self.batch_size, workers=self.workers):
            for i in range(len(x)):
                yield x[i : i + 1], int(y[i])


def _labelled_items(frames: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, int]]:
    frames = as_samples(frames, "validation frames")
    return [(frames[i : i + 1], int(labels[i])) for i in range(len(frames))]


@contextlib.contextmanager
def _quiet_nncf(nncf: Any):
    """NNCF logs through its own logger and draws rich progress bars on stdout: mute both."""
    if is_verbose():
        yield
        return
    logger = logging.getLogger("nncf")
    previous = logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(previous)


def _top1(compiled: Any, items: Any) -> float:
    """NNCF validation function: top-1 accuracy of ``compiled`` over ``(frame [1, ...], label)`` items."""
    hits = total = 0
    for frame, label in items:
        hits += int(np.argmax(compiled(frame)[0]) == label)
        total += 1
    return hits / max(total, 1)


def _infer(compiled: Any, frames: np.ndarray) -> np.ndarray:
    return np.concatenate([np.array(compiled(frames[i : i + 1])[0]) for i in range(len(frames))])


def _import_nncf() -> tuple[Any, Any]:
    try:
        import nncf
        import openvino
    except Exception as exc:  # ImportError, or a version clash raised at import time
        raise RuntimeUnavailable(
            f"OpenVINO INT8 needs nncf and openvino, which are not available: {short_reason(exc)}",
            hint=f"pip install '{NNCF_BOUND}' openvino, or use quantize.runtime: onnxruntime",
        ) from None
    return nncf, openvino
