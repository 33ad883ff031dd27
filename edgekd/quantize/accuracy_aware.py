"""Accuracy-aware INT8 for ONNX Runtime: keep the most damaging layers in float until the
accuracy drop against FP32 is within budget.

1. Quantize everything (``quantize_onnx_static``: resolves activation type and reduce_range).
2. Evaluate with the caller's function; within budget -> done, no layer in float.
3. Rank quantized nodes by sensitivity (``sensitivity.node_sensitivity``, channel-mean SQNR
   on calibration frames, worst first).
4. Exclude them one at a time (``nodes_to_exclude``; the calibration ranges are cached, so
   each step is one quantizer pass without calibration), evaluating after each, until the
   drop is within budget or ``max_float_nodes`` are excluded (then ParityError).
5. Build the final model with those nodes in float through ``quantize_onnx_static``, so
   it carries the same agreement check, speed-up verdict and coverage as any INT8 model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import ensure_dir, require_file
from edgekd.errors import ParityError
from edgekd.export.onnx_export import as_samples, ort_session, run_onnxruntime
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.ort_build import (
    CALIB_BATCH,
    FrameReader,
    narrow_input_convs,
    preprocess,
    quantize_qdq,
    quiet_logs,
)
from edgekd.quantize.ort_static import QuantizeReport, quantize_onnx_static
from edgekd.quantize.sensitivity import NodeSensitivity, node_sensitivity

Evaluate = Callable[[Path], float]
"""Accuracy (a fraction in [0, 1]) of the ONNX model at the given path on the caller's validation data."""

_SENSITIVITY_FRAMES = 128  # calibration frames used to rank layers; SQNR settles well before that


@dataclass
class AccuracyAwareReport:
    """Accuracies are fractions in [0, 1]; ``steps`` lists ``{"excluded": node, "accuracy": acc}``
    in order; ``float_nodes`` are the layers the final model keeps in float."""

    fp32_accuracy: float
    int8_accuracy: float
    full_int8_accuracy: float
    max_drop: float
    float_nodes: list[str]
    steps: list[dict[str, Any]]
    sensitivity: list[NodeSensitivity]
    quantization: QuantizeReport

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    def summary(self) -> str:
        kept = ", ".join(self.float_nodes) if self.float_nodes else "none"
        return (
            f"accuracy FP32 {self.fp32_accuracy:.2%}, full INT8 {self.full_int8_accuracy:.2%}, "
            f"final INT8 {self.int8_accuracy:.2%} (budget {self.max_drop * 100:.2f} points); "
            f"layers kept in float: {kept}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sensitivity"] = [s.to_dict() for s in self.sensitivity]
        data["quantization"] = self.quantization.to_dict()
        data["drop"] = self.drop
        return data


def labelled_accuracy(frames: np.ndarray, labels: np.ndarray) -> Evaluate:
    """An ``Evaluate`` for ONNX models: top-1 accuracy on ``frames`` ``[N, ...]``, int ``labels`` ``[N]``."""
    frames = as_samples(frames, "validation frames")
    labels = np.asarray(labels)

    def evaluate(path: Path) -> float:
        return float(np.mean(run_onnxruntime(path, frames).argmax(axis=1) == labels))

    return evaluate


def quantize_onnx_accuracy_aware(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_samples: np.ndarray,
    cfg: QuantizeConfig,
    evaluate: Evaluate,
    *,
    eval_samples: np.ndarray | None = None,
    verbose: bool = False,
    threads: int | None = None,
) -> AccuracyAwareReport:
    """Static INT8 of ``fp32_path`` at ``out_path`` losing at most ``cfg.max_accuracy_drop`` accuracy.

    Args:
        fp32_path, out_path, calibration_samples, eval_samples, verbose, threads: as
            ``quantize_onnx_static``.
        cfg: ``max_accuracy_drop`` is the budget (a fraction), ``max_float_nodes`` bounds the fallback.
        evaluate: accuracy of a model file on the validation split (see ``labelled_accuracy``).

    Raises:
        ParityError: still over budget with ``max_float_nodes`` layers in float (nothing written);
        otherwise as ``quantize_onnx_static``.
    """
    cfg.validate()
    budget = cfg.max_accuracy_drop if cfg.max_accuracy_drop is not None else 0.0
    fp32_path = require_file(fp32_path, "ONNX model", hint="run `edgekd export` first")
    calib = as_samples(calibration_samples, "calibration samples")
    out_path = Path(out_path)
    ensure_dir(out_path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.aa.", dir=out_path.parent))
    try:
        fp32_acc = evaluate(fp32_path)
        # The full model resolves "auto" choices once; the search reuses them.
        probe_cfg = dataclasses.replace(cfg, require_speedup=False)
        full = work / "full.onnx"
        # Every build is timed with the same thread count.
        static = functools.partial(quantize_onnx_static, threads=threads)
        first = static(fp32_path, full, calib, probe_cfg, verbose=verbose)
        resolved = dataclasses.replace(
            cfg, activation_type=first.activation_type, reduce_range=first.reduce_range
        )
        full_acc = evaluate(full)
        # Every layer INT8 until the search below keeps some in float.
        report = AccuracyAwareReport(fp32_acc, full_acc, full_acc, budget, [], [], [], first)
        if fp32_acc - full_acc > budget:
            report.sensitivity = node_sensitivity(full, fp32_path, calib[:_SENSITIVITY_FRAMES])
            report.float_nodes, report.steps, report.int8_accuracy = _exclude_until_within(
                fp32_path, work, calib, resolved, evaluate, report.sensitivity, fp32_acc - budget, verbose
            )
        excluded = report.float_nodes
        report.quantization = static(
            fp32_path, out_path, calib, resolved, eval_samples=eval_samples, nodes_to_exclude=excluded
        )
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _exclude_until_within(
    fp32_path: Path,
    work: Path,
    calib: np.ndarray,
    cfg: QuantizeConfig,
    evaluate: Evaluate,
    ranking: list[NodeSensitivity],
    target: float,
    verbose: bool,
) -> tuple[list[str], list[dict[str, Any]], float]:
    """Exclude ranked nodes one by one until ``evaluate`` >= ``target``; ParityError if the cap is hit."""
    with quiet_logs(verbose):
        pre, _ = preprocess(fp32_path, work / "pre.onnx")
        name = ort_session(pre).get_inputs()[0].name
        reader = FrameReader(calib, name, CALIB_BATCH)
        # Kept in float by every build (quantize_onnx_static does the same), not by this search.
        always = narrow_input_convs(pre) if cfg.float_input_conv else []
        excluded: list[str] = []
        steps: list[dict[str, Any]] = []
        for item in ranking[: cfg.max_float_nodes]:
            excluded.append(item.node)
            candidate = quantize_qdq(
                pre,
                work / "try.onnx",
                reader,
                cfg.activation_type,
                cfg,
                bool(cfg.reduce_range),
                work,
                [*always, *excluded],
            )
            accuracy = evaluate(candidate)
            steps.append({"excluded": item.node, "sqnr_db": item.to_dict()["sqnr_db"], "accuracy": accuracy})
            if accuracy >= target:
                return excluded, steps, accuracy
    best = max((s["accuracy"] for s in steps), default=float("nan"))
    raise ParityError(
        f"INT8 stays over the accuracy budget with {len(excluded)} layer(s) in float "
        f"({', '.join(excluded) or 'none'}): best {best:.2%}, needed {target:.2%}",
        hint="raise quantize.max_float_nodes or quantize.max_accuracy_drop, or deploy FP32",
    )
