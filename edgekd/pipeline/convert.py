"""Pipeline stages that convert the trained student: export (ONNX, OpenVINO IR, TensorRT) and
INT8 quantization. Each reads the artifacts of the stage before and writes its own, atomically,
with a manifest beside it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import resources
from edgekd.artifacts import commits_on_success, require_file, write_manifest
from edgekd.config import to_dict
from edgekd.errors import ShapeError
from edgekd.pipeline.checks import Log, _quiet, checkpoint_input, data_label
from edgekd.pipeline.measure import accuracy_of

PARITY_SAMPLES = 256  # real test frames compared between PyTorch and each export
QUANT_EVAL_SAMPLES = 512  # validation frames on which INT8 must agree with FP32


def _parity_samples(dataset: Any) -> np.ndarray:
    """The first :data:`PARITY_SAMPLES` test frames (all frames without split labels) as the
    network takes them, float32 [n, ...]: only those are read from a lazy dataset."""
    from edgekd.data.batches import network_arrays

    test = dataset.subset("test") if dataset.split is not None else dataset
    return network_arrays(test, np.arange(min(PARITY_SAMPLES, len(test)))).x


def _val_split(dataset: Any) -> tuple[Any, np.ndarray]:
    """The validation split (all frames without split labels), and its first
    :data:`QUANT_EVAL_SAMPLES` frames as network inputs float32 [n, ...] (only those are read)."""
    from edgekd.data.batches import network_arrays

    val = dataset.subset("val") if dataset.split is not None else dataset
    return val, network_arrays(val, np.arange(min(QUANT_EVAL_SAMPLES, len(val)))).x


@commits_on_success
def stage_export(
    student_path: Path,
    data_path: Path,
    export_cfg: Any,
    out_dir: Path,
    log: Log = _quiet,
    *,
    require_tensorrt: bool = False,
    target_shape: list[int] | None = None,
    target_file: str | Path | None = None,
) -> dict:
    """Export the student to ONNX (and OpenVINO IR, a TensorRT engine), each checked against
    PyTorch on real frames.

    ``require_tensorrt``: fail (one line) when ``export.tensorrt`` is set but TensorRT cannot
    build here, instead of logging the reason and going on. ``target_shape``: a target
    profile's ``input_shape`` (batch first; ``target_file`` names the profile in messages),
    whose frame must be the student's.
    """
    import torch

    if require_tensorrt and export_cfg.tensorrt is not None:
        from edgekd.export.tensorrt.builder import require_tensorrt as check_tensorrt

        check_tensorrt()  # before any work: an explicit request fails whole

    from edgekd.data.artifact import open_data
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(student_path)
    dataset = open_data(data_path)
    # Shape and class count: parity does not read labels, so the class names may differ.
    fits = dataclasses.replace(checkpoint_input(student_path, meta, "model"), class_names=None)
    fits.check(dataset, data_label(dataset, data_path))
    if target_shape is not None and list(target_shape[1:]) != list(meta.input_shape):
        raise ShapeError(
            f"target {target_file or 'profile'} has input_shape {list(target_shape)} but model "
            f"{student_path} takes frames of shape {list(meta.input_shape)}",
            hint="use the target profile of the device this model is for, or fix its input_shape",
        )
    samples = _parity_samples(dataset)
    outputs: dict[str, Path] = {}
    onnx_path = out_dir / f"{student_path.stem}.onnx"
    parity = export_onnx(model, samples, onnx_path, export_cfg, source=student_path)
    write_manifest(
        onnx_path,
        "onnx",
        parents=[student_path],
        config=to_dict(export_cfg),
        metrics={"parity": parity.to_dict()},
    )
    log(f"export: {onnx_path} — {parity.summary()}")
    outputs["onnx"] = onnx_path
    if export_cfg.openvino or export_cfg.tensorrt is not None:
        # PyTorch's logits on the parity frames: the reference of every further format.
        with torch.inference_mode():
            reference = model(torch.from_numpy(samples)).float().numpy()
    if export_cfg.openvino:
        from edgekd.export.openvino_export import export_openvino

        xml_path = out_dir / f"{student_path.stem}.xml"
        ov_parity = export_openvino(
            onnx_path, xml_path, samples, reference, export_cfg.parity, reference_name=f"model {student_path}"
        )
        write_manifest(
            xml_path,
            "openvino-ir",
            parents=[onnx_path],
            config=to_dict(export_cfg),
            metrics={"parity": ov_parity.to_dict()},
        )
        log(f"export: {xml_path} — {ov_parity.summary()}")
        outputs["openvino"] = xml_path
    if export_cfg.tensorrt is not None:
        from edgekd.export.tensorrt.stage import calibration_frames, tensorrt_engine_stage

        engine = tensorrt_engine_stage(
            onnx_path,
            out_dir,
            export_cfg.tensorrt,
            parity_samples=samples,
            reference=reference,
            calibration=calibration_frames(export_cfg.tensorrt, dataset),
            target_shape=target_shape,
            required=require_tensorrt,
            log=log,
        )
        if engine is not None:
            outputs["tensorrt"] = engine
    return outputs


@commits_on_success
def stage_quantize(
    onnx_path: Path, data_path: Path, quant_cfg: Any, out_path: Path, log: Log = _quiet
) -> Path:
    """INT8 with ONNX Runtime (QDQ ONNX) or OpenVINO/NNCF (IR), calibrated by a calibration recipe.

    The INT8 model must agree with FP32 (top-1) and lose at most ``max_accuracy_drop``
    of labelled accuracy on the validation split; otherwise it is removed and the
    stage fails with both accuracies. ``accuracy_aware`` keeps the most damaging
    layers in float until the drop is within that budget.
    """
    from edgekd.data.artifact import open_data
    from edgekd.data.calibration import load_calibration_recipe, select_calibration

    require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    dataset = open_data(data_path)
    recipe_path = resources.resolve("calibration", quant_cfg.calibration)
    selection = select_calibration(dataset, load_calibration_recipe(recipe_path))
    calibration = selection.samples(dataset)
    val, eval_samples = _val_split(dataset)
    metrics: dict[str, Any] = {"calibration": selection.to_dict()}
    if quant_cfg.runtime == "openvino":
        from edgekd.quantize.nncf_openvino import LabelledFrames, quantize_openvino

        controlled = quant_cfg.accuracy_aware
        ov_report = quantize_openvino(
            onnx_path,
            out_path,
            calibration,
            quant_cfg,
            eval_samples=eval_samples,
            validation=LabelledFrames(val) if controlled else None,
        )
        metrics["quantization"] = ov_report.to_dict()
        backend, kind, summary = "openvino", "openvino-int8", "NNCF INT8 (OpenVINO IR)"
    elif quant_cfg.accuracy_aware:
        from edgekd.quantize.accuracy_aware import quantize_onnx_accuracy_aware

        def evaluate(path: Path) -> float:
            return accuracy_of("onnxruntime", Path(path), val)

        aa_report = quantize_onnx_accuracy_aware(
            onnx_path, out_path, calibration, quant_cfg, evaluate, eval_samples=eval_samples
        )
        metrics["accuracy_aware"] = aa_report.to_dict()
        backend, kind, summary = "onnxruntime", "onnx-int8", aa_report.summary()
    else:
        from edgekd.quantize.ort_static import quantize_onnx_static

        report = quantize_onnx_static(onnx_path, out_path, calibration, quant_cfg, eval_samples=eval_samples)
        metrics["quantization"] = report.to_dict()
        backend, kind = "onnxruntime", "onnx-int8"
        summary = f"activations {report.activation_type}: {report.choice_reason}"
        if report.assessment is not None:
            summary += f"; {report.assessment.summary()}"
            for warning in report.assessment.warnings:
                log(f"quantize: warning: {warning}")
    reference = onnx_path if backend == "onnxruntime" else _openvino_reference(onnx_path)
    metrics["accuracy"] = _int8_accuracy_check(backend, reference, out_path, val, quant_cfg.max_accuracy_drop)
    write_manifest(out_path, kind, parents=[onnx_path, data_path], config=to_dict(quant_cfg), metrics=metrics)
    accuracy = metrics["accuracy"]
    log(
        f"quantize: {out_path} — {summary}; "
        f"val accuracy FP32 {accuracy['fp32']:.2%} -> INT8 {accuracy['int8']:.2%}"
    )
    return out_path


def _openvino_reference(onnx_path: Path) -> Path:
    """The FP32 model OpenVINO INT8 is compared with: the IR beside the ONNX when exported, else the ONNX."""
    xml = onnx_path.with_suffix(".xml")
    return xml if xml.is_file() else onnx_path


def _int8_accuracy_check(
    backend: str, fp32: Path, int8: Path, val: Any, max_drop: float | None
) -> dict[str, float]:
    """Labelled accuracy of both models on ``val`` (streamed when lazy) through the bench
    evaluator; removes a failing INT8."""
    from edgekd.errors import ParityError

    fp32_acc = accuracy_of(backend, fp32, val)
    int8_acc = accuracy_of(backend, int8, val)
    result = {"fp32": fp32_acc, "int8": int8_acc, "drop": fp32_acc - int8_acc, "frames": len(val)}
    if max_drop is not None and fp32_acc - int8_acc > max_drop:
        int8.unlink(missing_ok=True)
        if int8.suffix == ".xml":
            int8.with_suffix(".bin").unlink(missing_ok=True)
        raise ParityError(
            f"INT8 loses {(fp32_acc - int8_acc) * 100:.2f} points of accuracy "
            f"on {len(val)} validation frames "
            f"(FP32 {fp32_acc:.2%}, INT8 {int8_acc:.2%}; allowed {max_drop * 100:.2f})",
            hint="try quantize.calibration_method: entropy or percentile, more calibration samples, "
            "or raise quantize.max_accuracy_drop",
        )
    return result
