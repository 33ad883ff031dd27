"""The export stage: the trained student -> ONNX (and OpenVINO IR, a TensorRT engine), each
checked against PyTorch on real frames and written atomically with a manifest beside it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import commits_on_success, write_manifest
from edgekd.config import to_dict
from edgekd.errors import ConfigError, ShapeError
from edgekd.models.fit import checkpoint_input, data_label
from edgekd.pipeline.checks import Log, _quiet
from edgekd.pipeline.conversion import export_onnx_step, export_openvino_step

PARITY_SAMPLES = 256  # real test frames compared between PyTorch and each export


def _parity_samples(dataset: Any) -> np.ndarray:
    """The first :data:`PARITY_SAMPLES` test frames (all frames without split labels) as the
    network takes them, float32 [n, ...]: only those are read from a lazy dataset."""
    from edgekd.data.batches import network_arrays

    test = dataset.subset("test") if dataset.split is not None else dataset
    return network_arrays(test, np.arange(min(PARITY_SAMPLES, len(test)))).x


def _record(path: Path, kind: str, parent: Path | None, cfg: Any, parity: Any, log: Log) -> None:
    """The manifest of one checked export and its log line."""
    parents = [parent] if parent is not None else []
    write_manifest(path, kind, parents=parents, config=to_dict(cfg), metrics={"parity": parity.to_dict()})
    log(f"export: {path} — {parity.summary()}")


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
    PyTorch on real frames; returns ``{"onnx": path, "openvino": path, "tensorrt": path}`` for
    the formats written.

    ``require_tensorrt``: fail (one line) when ``export.tensorrt`` is set but TensorRT cannot
    build here, instead of logging the reason and going on. ``target_shape``: a target
    profile's ``input_shape`` (batch first; ``target_file`` names the profile in messages),
    whose frame must be the student's.
    """
    if require_tensorrt and export_cfg.tensorrt is not None:
        from edgekd.export.tensorrt.builder import require_tensorrt as check_tensorrt

        check_tensorrt()  # before any work: an explicit request fails whole
    model, dataset = _checked_inputs(student_path, data_path, target_shape, target_file)
    return export_checked(
        model,
        _parity_samples(dataset),
        out_dir,
        student_path.stem,
        export_cfg,
        log,
        source=student_path,
        dataset=dataset,
        require_tensorrt=require_tensorrt,
        target_shape=target_shape,
    )


def export_checked(
    model: Any,
    samples: np.ndarray,
    out_dir: Path,
    stem: str,
    export_cfg: Any,
    log: Log = _quiet,
    *,
    source: Path | None = None,
    dataset: Any = None,
    require_tensorrt: bool = False,
    target_shape: list[int] | None = None,
) -> dict:
    """``model`` (an ``nn.Module``) to ``out_dir/<stem>.onnx`` (and ``.xml``, a TensorRT engine),
    each checked against PyTorch on ``samples`` (float32 [n, ...] as the network takes them).

    ``source``: the checkpoint the model came from (named in messages and manifests; None for a
    model built in memory). ``dataset``: where TensorRT INT8 draws its calibration frames.
    """
    onnx_path = out_dir / f"{stem}.onnx"
    parity = export_onnx_step(model, samples, onnx_path, export_cfg, source=source)
    _record(onnx_path, "onnx", source, export_cfg, parity, log)
    outputs: dict[str, Path] = {"onnx": onnx_path}
    if not export_cfg.openvino and export_cfg.tensorrt is None:
        return outputs
    import torch

    # PyTorch's logits on the parity frames: the reference of every further format.
    with torch.inference_mode():
        reference = model(torch.from_numpy(samples)).float().numpy()
    if export_cfg.openvino:
        xml_path = out_dir / f"{stem}.xml"
        ov_parity = export_openvino_step(
            onnx_path,
            xml_path,
            samples,
            export_cfg.parity,
            reference=reference,
            reference_name=f"model {source or stem}",
        )
        _record(xml_path, "openvino-ir", onnx_path, export_cfg, ov_parity, log)
        outputs["openvino"] = xml_path
    if export_cfg.tensorrt is not None:
        engine = _tensorrt(
            onnx_path,
            out_dir,
            export_cfg.tensorrt,
            samples,
            reference,
            dataset,
            log,
            required=require_tensorrt,
            target_shape=target_shape,
        )
        if engine is not None:
            outputs["tensorrt"] = engine
    return outputs


def _tensorrt(
    onnx_path: Path,
    out_dir: Path,
    trt: Any,
    samples: np.ndarray,
    reference: np.ndarray,
    dataset: Any,
    log: Log,
    *,
    required: bool,
    target_shape: list[int] | None,
) -> Path | None:
    """The TensorRT engine of ``onnx_path`` checked against ``reference`` (None: not built here)."""
    from edgekd.data.calibration import calibration_frames
    from edgekd.pipeline.tensorrt_stage import tensorrt_engine_stage

    calibration = None
    if trt.precision == "int8":
        if dataset is None:
            raise ConfigError(
                "a TensorRT INT8 engine needs calibration data", hint="pass data= (a dataset or data file)"
            )
        calibration = calibration_frames(dataset, trt.calibration).frames
    return tensorrt_engine_stage(
        onnx_path,
        out_dir,
        trt,
        parity_samples=samples,
        reference=reference,
        calibration=calibration,
        target_shape=target_shape,
        required=required,
        log=log,
    )


def _checked_inputs(
    student_path: Path, data_path: Path, target_shape: list[int] | None, target_file: str | Path | None
) -> tuple[Any, Any]:
    """The student (nn.Module) and the dataset, refused (one line) when the data's frames or
    class count, or the target profile's input shape, do not fit the student."""
    from edgekd.data.artifact import open_data
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
    return model, dataset
