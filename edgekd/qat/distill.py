"""Quantization-aware distillation: fine-tune a fake-quant student against its teacher, export
it as Q/DQ ONNX and compare FP32, PTQ INT8 and QAT INT8 accuracy on the same frames.

``qat_distill`` is the library entry point (the ``edgekd qat`` command, ``edgekd distill
--qat`` and the deploy stage call it). Training is the distillation loop of
``edgekd.distill`` with its loss registry: the teacher's logits are the target.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgekd.artifacts import atomic_write_json, atomic_write_text, write_manifest
from edgekd.config import to_dict
from edgekd.data.calibration import CalibrationRecipe, CalibrationSelection, select_calibration
from edgekd.data.dataset import ArrayDataset
from edgekd.distill.config import TrainResult
from edgekd.errors import ConfigError
from edgekd.qat.config import QatConfig
from edgekd.qat.equalize import describe as describe_equalization
from edgekd.qat.export import QatExportReport, export_qat_onnx, openvino_logits
from edgekd.qat.prepare import QatModel, calibrate, equalized_float, prepare_qat
from edgekd.qat.report import AccuracyRow, accuracy_row, comparison, markdown_table

REPORT_SCHEMA = "edgekd.qat-report/1"
ONNX_NAME = "student.qat.onnx"
_CHECK_FRAMES = 2048  # frames the runtime-agreement checks use (accuracy uses the whole split)

Log = Callable[[str], None]


@dataclasses.dataclass
class QatResult:
    """What ``qat_distill`` produced: the Q/DQ ONNX, the report files, the accuracy rows
    (FP32 first), the export checks, the training history and the PTQ baseline report."""

    onnx_path: Path
    report_path: Path
    rows: list[AccuracyRow]
    export: QatExportReport
    train: TrainResult
    ptq: dict[str, Any] | None = None

    def row(self, name: str) -> AccuracyRow:
        return next(r for r in self.rows if r.name == name)

    def table(self) -> str:
        return markdown_table(self.rows)


def calibration_selection(data: ArrayDataset, frames: int) -> CalibrationSelection:
    """``frames`` training frames, stratified by SNR when the data has SNR labels, else by class."""
    selection = "stratified_snr" if data.snr is not None else "stratified_class"
    recipe = CalibrationRecipe(name="qat", source_split="train", num_samples=frames, selection=selection)
    return select_calibration(data, recipe)


def _splits(data: ArrayDataset, eval_split: str) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    if data.split is None:
        raise ConfigError(
            "quantization-aware distillation needs a dataset with train/val/test splits",
            hint="use a dataset written by `edgekd distill` (data.npz) or one with a split array",
        )
    parts = [data.subset(name) for name in ("train", "val", eval_split)]
    for name, part in zip(("train", "val", eval_split), parts, strict=True):
        if len(part) == 0:
            raise ConfigError(f"the dataset's {name} split is empty", hint="regenerate the dataset")
    return parts[0], parts[1], parts[2]


def qat_distill(
    student: nn.Module,
    teacher: Any,
    data: ArrayDataset,
    cfg: QatConfig,
    out: str | os.PathLike[str],
    *,
    log: Log | None = None,
    parents: list[str | os.PathLike[str]] | None = None,
) -> QatResult:
    """Fine-tune ``student`` with fake quantization against ``teacher``; write the Q/DQ ONNX.

    Args:
        student: the trained FP32 student, [N, *frame] -> [N, K]; left untouched (a copy trains).
        teacher: ``nn.Module`` or logit callable, as for ``edgekd.distill.train.distill``.
        data: frames with train/val/test splits; ranges calibrate on train, the best epoch
            is picked on val, the report scores ``cfg.eval_split``.
        cfg: format, ranges, training and checks (see ``QatConfig``).
        out: folder for ``student.qat.onnx`` (+ manifest), ``qat_report.json``,
            ``qat_report.md`` and the training run files (``qat-run/``).
        parents: artifact files recorded in the manifest (student, teacher, data).

    Raises:
        ConfigError: bad settings or data without splits. QatError / ParityError: the
        export fails its coverage or runtime checks (nothing is left at the ONNX path then).
    """
    from edgekd.distill.checks import predict_logits
    from edgekd.distill.train import distill
    from edgekd.export.onnx_export import run_onnxruntime

    cfg.validate()
    say = log or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val, evals = _splits(data, cfg.eval_split)
    selection = calibration_selection(data, cfg.calibration_frames)
    calib = selection.samples(data)

    student = copy.deepcopy(student).cpu().eval()  # safe: nn.Module.eval(), the FP32 reference
    model = prepare_qat(student, cfg, calib)
    calibrate(model, calib)
    if cfg.equalize:
        say(describe_equalization(model.equalized))
    rows = [accuracy_row("FP32", "torch", predict_logits(student, evals.x).numpy(), evals)]
    rows.append(
        accuracy_row("INT8 fake-quant, before QAT", "torch", predict_logits(model, evals.x).numpy(), evals)
    )
    ptq = None
    if cfg.ptq_baseline:
        ptq, ptq_logits = _ptq_baseline(student, calib, evals, cfg, out)
        rows.insert(1, accuracy_row("PTQ INT8 (ORT static)", "onnxruntime", ptq_logits, evals))
        if model.equalized:
            # The same equalized network PTQ'd: shows how much of the gain CLE alone brings.
            cle = equalized_float(student, calib)
            ptq["equalized"], cle_logits = _ptq_baseline(cle, calib, evals, cfg, out)
            rows.insert(2, accuracy_row("PTQ INT8 + CLE (ORT static)", "onnxruntime", cle_logits, evals))
    say(
        f"qat: {len(model.quantized_layers())} quantized layers, BatchNorm "
        f"{'folded' if model.bn_folded else 'frozen'}, {cfg.resolved_weight_bits()}-bit weights, "
        f"{cfg.activations} activations ({cfg.ranges} ranges), "
        f"calibrated on {len(calib)} training frames"
    )

    result = distill(
        model,
        teacher,
        train,
        val,
        cfg.train,
        cfg.kd,
        log=log,
        out_dir=out / "qat-run",
        on_step=_freezer(model, cfg),
    )
    model.cpu()
    fake_quant = predict_logits(model, evals.x).numpy()
    path = out / ONNX_NAME
    export = export_qat_onnx(model, evals.x[:_CHECK_FRAMES], path, cfg, parents=parents, config=to_dict(cfg))
    rows.append(accuracy_row("QAT INT8 (fake-quant)", "torch", fake_quant, evals))
    rows.append(accuracy_row("QAT INT8", "onnxruntime", run_onnxruntime(path, evals.x), evals))
    ov = openvino_logits(path, evals.x)
    if ov is not None:
        rows.append(accuracy_row("QAT INT8", "openvino", ov, evals))

    report_path = _write_reports(out, rows, evals, export, result, ptq, selection, cfg)
    write_manifest(
        path,
        "onnx-qat-int8",
        parents=parents,
        config=to_dict(cfg),
        metrics={"accuracy": comparison(rows, len(evals)), "export": export.to_dict()},
    )
    say(f"qat: {path}\n{markdown_table(rows)}")
    return QatResult(path, report_path, rows, export, result, ptq)


def _freezer(model: QatModel, cfg: QatConfig) -> Callable[[int], None] | None:
    """An on_step callback that freezes learned ranges after ``cfg.freeze_ranges_after`` steps."""
    if cfg.ranges != "learned" or cfg.freeze_ranges_after is None:
        return None
    if cfg.freeze_ranges_after == 0:
        model.freeze_ranges()
        return None

    def on_step(step: int) -> None:
        if step == cfg.freeze_ranges_after:
            model.freeze_ranges()

    return on_step


def _ptq_baseline(
    student: nn.Module, calib: np.ndarray, evals: ArrayDataset, cfg: QatConfig, out: Path
) -> tuple[dict[str, Any], np.ndarray]:
    """ONNX Runtime static INT8 of the FP32 student, same calibration frames and activation type."""
    from edgekd.export.onnx_export import ExportConfig, export_onnx, run_onnxruntime
    from edgekd.quantize.config import QuantizeConfig
    from edgekd.quantize.ort_static import quantize_onnx_static

    work = Path(tempfile.mkdtemp(prefix=".qat-ptq.", dir=out))
    try:
        fp32 = work / "student.onnx"
        export_onnx(student, evals.x[:64], fp32, ExportConfig(opset=cfg.opset, openvino=False))
        # PTQ gets its best shot: reduce_range probed on this CPU; no agreement gate, only the report.
        qcfg = QuantizeConfig(
            activation_type=cfg.activations,
            per_channel=True,
            reduce_range="auto",
            calibration_method="minmax",
            min_top1_agreement=0.0,
            max_accuracy_drop=None,
        )
        report = quantize_onnx_static(fp32, work / "student.ptq.onnx", calib, qcfg)
        return report.to_dict(), run_onnxruntime(work / "student.ptq.onnx", evals.x)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_reports(
    out: Path,
    rows: list[AccuracyRow],
    evals: ArrayDataset,
    export: QatExportReport,
    result: TrainResult,
    ptq: dict[str, Any] | None,
    selection: CalibrationSelection,
    cfg: QatConfig,
) -> Path:
    table = markdown_table(rows)
    doc = {
        "schema": REPORT_SCHEMA,
        "eval_split": cfg.eval_split,
        "weight_bits": cfg.resolved_weight_bits(),
        "accuracy": comparison(rows, len(evals)),
        "table": table,
        "export": export.to_dict(),
        "train": {"history": result.history, "best_epoch": result.best_epoch, "steps": result.steps},
        "ptq": ptq,
        "calibration": selection.to_dict(),
        "config": to_dict(cfg),
    }
    path = out / "qat_report.json"
    atomic_write_json(path, doc)
    atomic_write_text(
        out / "qat_report.md", f"# Quantization-aware distillation ({cfg.eval_split} split)\n\n{table}\n"
    )
    return path
