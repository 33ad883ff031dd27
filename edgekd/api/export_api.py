"""``edgekd.export``: a trained network -> ONNX (+ OpenVINO IR, a TensorRT engine), parity-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.api import inputs
from edgekd.api.distill_api import Log, default_log, with_thread_policy
from edgekd.api.results import ExportResult
from edgekd.errors import ConfigError, ShapeError


@with_thread_policy
def export(
    model: Any,
    *,
    example: Any = None,
    data: Any = None,
    out: str | Path | None = None,
    name: str | None = None,
    opset: int = 17,
    openvino: bool = True,
    atol: float = 1e-4,
    simplify: bool = False,
    tensorrt: str | None = None,
    calibration: str = "random-256",
    target: str | Path | None = None,
    log: Log | None = None,
) -> ExportResult:
    """Export ``model`` to ONNX (and OpenVINO IR, a TensorRT engine); each file must match PyTorch.

    Args:
        model: an ``nn.Module`` or an edgekd checkpoint (``student.pt``).
        example: one sample ``[C, ...]``, no batch axis (tensor or array, e.g. ``train_ds[0][0]``)
            to export with and check parity on; ``data`` gives more (up to 256 of its test frames).
        data: a dataset, a DataLoader or a data file: the frames parity is checked on (and
            TensorRT INT8's calibration frames).
        out: the folder written (default: the checkpoint's folder; required for a module).
        name: the files' stem (default: the checkpoint's, else ``model``).
        opset, openvino, atol, simplify: ONNX opset, also OpenVINO IR, the largest absolute error
            allowed against PyTorch, onnxslim simplification.
        tensorrt: "fp32", "fp16" or "int8": also a TensorRT engine (needs TensorRT and a GPU;
            refused in one line otherwise). ``calibration``: its INT8 calibration recipe.
        target: a target profile (name or YAML) whose input_shape the model must take.

    Returns:
        an :class:`ExportResult` (the paths and each format's parity figures).
    """
    from edgekd.artifacts import ensure_dir, rollback_on_failure

    cfg = _export_config(opset, openvino, atol, simplify, tensorrt, calibration)
    target_shape, target_file = _target_shape(target)
    log = default_log(log)
    with rollback_on_failure():
        if inputs.is_path(model) and (data is None or inputs.is_path(data)) and example is None:
            from edgekd.artifacts import require_file
            from edgekd.pipeline.export_stage import stage_export

            checkpoint = require_file(Path(model), "checkpoint")
            if data is None:
                raise ConfigError("export needs data= or example=", hint="the frames parity is checked on")
            folder = Path(out) if out is not None else checkpoint.parent
            ensure_dir(folder)  # removed again if the export fails
            outputs = stage_export(
                checkpoint,
                Path(data),
                cfg,
                folder,
                log,
                require_tensorrt=tensorrt is not None,
                target_shape=target_shape,
                target_file=target_file,
            )
        else:
            outputs = _export_module(model, example, data, out, name, cfg, target_shape, target_file, log)
    return _result(outputs)


def _export_config(
    opset: int, openvino: bool, atol: float, simplify: bool, tensorrt: str | None, calibration: str
) -> Any:
    from edgekd.config import from_dict
    from edgekd.export.onnx_export import ExportConfig

    cfg = from_dict(
        ExportConfig, {"opset": opset, "openvino": openvino, "simplify": simplify, "parity": {"atol": atol}}
    )
    if tensorrt is not None:
        from edgekd.export.tensorrt.plan import TensorRTConfig

        cfg.tensorrt = from_dict(TensorRTConfig, {"precision": tensorrt, "calibration": calibration})
    return cfg


def _target_shape(target: str | Path | None) -> tuple[list[int] | None, Path | None]:
    """The target profile's input_shape and file, read before anything is written."""
    if target is None:
        return None, None
    from edgekd import resources
    from edgekd.targets import load_target

    return load_target(str(target)).input_shape, resources.resolve("targets", str(target))


def _samples(example: Any, data: Any) -> tuple[np.ndarray, Any]:
    """The parity frames float32 [n, ...] (``example``'s, then up to 256 of ``data``'s) and the
    wrapped dataset (None without ``data``)."""
    from edgekd.pipeline.export_stage import _parity_samples

    parts, dataset = [], None
    if data is not None:
        dataset = inputs.evaluation_data(data, "data")[0]
        parts.append(_parity_samples(dataset))
    if example is not None:  # one sample: the batch axis is added here
        arr = example.detach().cpu().numpy() if hasattr(example, "detach") else np.asarray(example)
        parts.insert(0, arr.astype(np.float32)[None])
    if not parts:
        raise ConfigError("export needs example= or data=", hint="pass a sample the model takes")
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise ShapeError(f"example= and data= frames differ in shape: {sorted(shapes)}")
    return np.concatenate(parts), dataset


def _export_module(
    model: Any,
    example: Any,
    data: Any,
    out: str | Path | None,
    name: str | None,
    cfg: Any,
    target_shape: list[int] | None,
    target_file: Path | None,
    log: Log,
) -> dict[str, Path]:
    from edgekd.artifacts import ensure_dir
    from edgekd.pipeline.export_stage import export_checked

    source = None
    if inputs.is_path(model):
        source = Path(model)
        model = inputs.load_model_file(source, "checkpoint")[0]
    if out is None and source is None:
        raise ConfigError("export of a module needs out= (the folder to write)", hint="e.g. out='runs/kd'")
    samples, dataset = _samples(example, data)
    if target_shape is not None and list(target_shape[1:]) != list(samples.shape[1:]):
        raise ShapeError(
            f"target {target_file} has input_shape {list(target_shape)} but the frames are "
            f"{list(samples.shape[1:])}",
            hint="use the target profile of the device this model is for",
        )
    model.eval()  # safe: nn.Module.eval(), inference mode for the export
    folder = ensure_dir(Path(out) if out is not None else source.parent)  # type: ignore[union-attr]
    stem = name or (source.stem if source is not None else "model")
    return export_checked(
        model,
        samples,
        folder,
        stem,
        cfg,
        log,
        source=source,
        dataset=dataset,
        require_tensorrt=cfg.tensorrt is not None,
        target_shape=target_shape,
    )


def _result(outputs: dict[str, Path]) -> ExportResult:
    from edgekd.artifacts import read_manifest

    parity = {
        fmt: (read_manifest(path, required=False).get("metrics") or {}).get("parity") or {}
        for fmt, path in outputs.items()
    }
    return ExportResult(
        onnx_path=outputs["onnx"],
        openvino_path=outputs.get("openvino"),
        tensorrt_path=outputs.get("tensorrt"),
        parity=parity,
    )


__all__ = ["export"]
