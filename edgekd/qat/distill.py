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
from edgekd.data.calibration import (
    CalibrationFrames,
    CalibrationRecipe,
    CalibrationSelection,
    calibration_frames,
)
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


def qat_calibration(data: ArrayDataset, frames: int) -> CalibrationFrames:
    """``frames`` training frames, stratified by SNR when the data has SNR labels, else by class."""
    selection = "stratified_snr" if data.snr is not None else "stratified_class"
    recipe = CalibrationRecipe(name="qat", source_split="train", num_samples=frames, selection=selection)
    return calibration_frames(data, recipe)


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
    from edgekd.distill.train import distill

    cfg.validate()
    say = log or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val, evals = _splits(data, cfg.eval_split)
    calib = qat_calibration(data, cfg.calibration_frames)
    student = copy.deepcopy(student).cpu().eval()  # safe: nn.Module.eval(), the FP32 reference
    model = prepare_qat(student, cfg, calib.frames)
    calibrate(model, calib.frames)
    if cfg.equalize:
        say(describe_equalization(model.equalized))
    rows, ptq = _baselines(student, model, calib.frames, evals, cfg, out)
    say(
        f"qat: {len(model.quantized_layers())} quantized layers, BatchNorm "
        f"{'folded' if model.bn_folded else 'frozen'}, {cfg.resolved_weight_bits()}-bit weights, "
        f"{cfg.activations} activations ({cfg.ranges} ranges), "
        f"calibrated on {len(calib.frames)} training frames"
    )
    run_dir = out / "qat-run"
    result = distill(
        model, teacher, train, val, cfg.train, cfg.kd, log=log, out_dir=run_dir, on_step=_freezer(model, cfg)
    )
    path = out / ONNX_NAME
    export = _export_and_score(model, evals, cfg, path, rows, parents)
    report_path = _write_reports(out, rows, evals, export, result, ptq, calib.selection, cfg)
    write_manifest(
        path,
        "onnx-qat-int8",
        parents=parents,
        config=to_dict(cfg),
        metrics={"accuracy": comparison(rows, len(evals)), "export": export.to_dict()},
    )
    say(f"qat: {path}\n{markdown_table(rows)}")
    return QatResult(path, report_path, rows, export, result, ptq)


def _baselines(
    student: nn.Module, model: QatModel, calib: np.ndarray, evals: ArrayDataset, cfg: QatConfig, out: Path
) -> tuple[list[AccuracyRow], dict[str, Any] | None]:
    """The rows QAT is compared with: FP32, fake-quant before training and (``cfg.ptq_baseline``)
    ONNX Runtime's static INT8 of the FP32 student, also after CLE; and the PTQ report."""
    from edgekd.distill.checks import predict_logits

    rows = [accuracy_row("FP32", "torch", predict_logits(student, evals.x).numpy(), evals)]
    before = predict_logits(model, evals.x).numpy()
    rows.append(accuracy_row("INT8 fake-quant, before QAT", "torch", before, evals))
    if not cfg.ptq_baseline:
        return rows, None
    ptq, ptq_logits = _ptq_baseline(student, calib, evals, cfg, out)
    rows.insert(1, accuracy_row("PTQ INT8 (ORT static)", "onnxruntime", ptq_logits, evals))
    if model.equalized:
        # The same equalized network PTQ'd: shows how much of the gain CLE alone brings.
        cle = equalized_float(student, calib)
        ptq["equalized"], cle_logits = _ptq_baseline(cle, calib, evals, cfg, out)
        rows.insert(2, accuracy_row("PTQ INT8 + CLE (ORT static)", "onnxruntime", cle_logits, evals))
    return rows, ptq


def _export_and_score(
    model: QatModel,
    evals: ArrayDataset,
    cfg: QatConfig,
    path: Path,
    rows: list[AccuracyRow],
    parents: list[str | os.PathLike[str]] | None,
) -> QatExportReport:
    """Export the trained model as Q/DQ ONNX at ``path``; append its accuracy rows to ``rows``:
    fake-quant in torch, then the ONNX on ONNX Runtime (and OpenVINO when installed)."""
    from edgekd.distill.checks import predict_logits
    from edgekd.export.onnx_export import run_onnxruntime

    model.cpu()
    fake_quant = predict_logits(model, evals.x).numpy()
    export = export_qat_onnx(model, evals.x[:_CHECK_FRAMES], path, cfg, parents=parents, config=to_dict(cfg))
    rows.append(accuracy_row("QAT INT8 (fake-quant)", "torch", fake_quant, evals))
    rows.append(accuracy_row("QAT INT8", "onnxruntime", run_onnxruntime(path, evals.x), evals))
    ov = openvino_logits(path, evals.x)
    if ov is not None:
        rows.append(accuracy_row("QAT INT8", "openvino", ov, evals))
    return export


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
    """ONNX Runtime static INT8 of the FP32 student, same calibration frames and activation type,
    through the pipeline's one export -> quantize sequence; (its report, its logits on evals)."""
    from edgekd.export.onnx_export import ExportConfig, run_onnxruntime
    from edgekd.pipeline.conversion import convert
    from edgekd.quantize.config import QuantizeConfig

    work = Path(tempfile.mkdtemp(prefix=".qat-ptq.", dir=out))
    try:
        # PTQ gets its best shot: reduce_range probed on this CPU; no agreement gate, only the report.
        qcfg = QuantizeConfig(
            runtime="onnxruntime",
            activation_type=cfg.activations,
            per_channel=True,
            reduce_range="auto",
            calibration_method="minmax",
            min_top1_agreement=0.0,
            max_accuracy_drop=None,
        )
        export_cfg = ExportConfig(opset=cfg.opset, openvino=False)
        conv = convert(student, evals.x[:64], work, export_cfg, qcfg, calib)
        return conv.int8.report.to_dict(), run_onnxruntime(conv.int8.path, evals.x)
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
