"""The quantize stage: the FP32 export -> INT8 by the quantizer ``quantize.runtime`` names,
calibrated by a calibration recipe, judged on the validation split, written with a manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import commits_on_success, require_file, write_manifest
from edgekd.config import to_dict
from edgekd.pipeline.checks import Log, _quiet
from edgekd.pipeline.conversion import quantize_step, verify_int8_accuracy
from edgekd.quantize.protocol import QuantizeInputs

QUANT_EVAL_SAMPLES = 512  # validation frames on which INT8 must agree with FP32


def _val_split(dataset: Any) -> tuple[Any, np.ndarray]:
    """The validation split (all frames without split labels), and its first
    :data:`QUANT_EVAL_SAMPLES` frames as network inputs float32 [n, ...] (only those are read)."""
    from edgekd.data.batches import network_arrays

    val = dataset.subset("val") if dataset.split is not None else dataset
    return val, network_arrays(val, np.arange(min(QUANT_EVAL_SAMPLES, len(val)))).x


@commits_on_success
def stage_quantize(
    onnx_path: Path,
    data_path: Path | None,
    quant_cfg: Any,
    out_path: Path,
    log: Log = _quiet,
    *,
    threads: int | None = None,
    dataset: Any = None,
    validation: Any = None,
) -> Path:
    """INT8 of ``onnx_path`` at ``out_path`` by the quantizer ``quant_cfg.runtime`` names (ONNX
    Runtime QDQ ONNX, OpenVINO/NNCF IR, ...), calibrated by a calibration recipe.

    The INT8 model must agree with FP32 (top-1) and lose at most ``max_accuracy_drop``
    of labelled accuracy on the validation split; otherwise it is removed and the
    stage fails with both accuracies. ``accuracy_aware`` keeps the most damaging
    layers in float until the drop is within that budget. ``threads``: the thread count
    INT8 is timed against FP32 with (the target's); None: every core this process may use.

    ``dataset`` (an opened dataset, e.g. the Python API's wrapped torch Dataset) replaces
    ``data_path``; ``validation`` replaces its validation split as the frames INT8 is judged on.
    """
    from edgekd.data.artifact import open_data
    from edgekd.data.calibration import calibration_frames
    from edgekd.pipeline.measure import accuracy_of
    from edgekd.quantize.quantizers import quantizer_for

    require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    if dataset is None:
        dataset = open_data(data_path)
    calibration = calibration_frames(dataset, quant_cfg.calibration)
    val, eval_samples = _val_split(dataset if validation is None else validation)
    quantizer = quantizer_for(quant_cfg)

    def evaluate(path: Path) -> float:
        return accuracy_of(quantizer.backend, Path(path), val)

    inputs = QuantizeInputs(
        calibration.frames, threads=threads, eval_samples=eval_samples, validation=val, evaluate=evaluate
    )
    result = quantize_step(onnx_path, out_path, quant_cfg, inputs)
    for warning in result.warnings:
        log(f"quantize: warning: {warning}")
    metrics: dict[str, Any] = {"calibration": calibration.to_dict(), **result.to_dict()}
    reference = quantizer.fp32_reference(onnx_path)
    metrics["accuracy"] = verify_int8_accuracy(result, reference, val, quant_cfg.max_accuracy_drop)
    write_manifest(
        out_path,
        result.kind,
        parents=[onnx_path] + ([data_path] if data_path is not None else []),
        config=to_dict(quant_cfg),
        metrics=metrics,
    )
    accuracy = metrics["accuracy"]
    log(
        f"quantize: {out_path} — {result.summary}; "
        f"val accuracy FP32 {accuracy['fp32']:.2%} -> INT8 {accuracy['int8']:.2%}"
    )
    return out_path
