"""The TensorRT step of ``edgekd export``: ONNX -> engine in the run folder, parity-checked.

The engine is built (or taken from the engine cache, see ``builder.engine_from_onnx``),
copied next to the ONNX as ``<stem>.<precision>.engine`` with a manifest, and run on the
parity frames through the TensorRT backend: the same check the ONNX and OpenVINO exports
pass, with tolerances that fit the precision (reduced precision changes logits a little,
so FP16 allows percent-level error and INT8 is judged on top-1 agreement, as the ONNX
Runtime INT8 check is).

Where TensorRT or a CUDA GPU is absent: an explicit request (``edgekd export --tensorrt``)
fails in one line; a recipe that merely lists a TensorRT engine logs the reason and goes on,
so one recipe serves a CPU laptop and a GPU box.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, manifest_path, sha256_file, write_manifest
from edgekd.config import to_dict
from edgekd.errors import InputFileError
from edgekd.export.parity import ParityConfig, compare_outputs
from edgekd.export.tensorrt.builder import (
    engine_from_onnx,
    require_tensorrt,
    tensorrt_major_version,
    tensorrt_unavailable_reason,
)
from edgekd.export.tensorrt.plan import TensorRTConfig, resolve_int8_mode

#: Parity tolerances by engine precision when the config sets none.
DEFAULT_PARITY = {
    "fp32": ParityConfig(atol=1e-3, rtol=1e-3, min_top1_agreement=0.999),
    # TF32 is off for fp32 engines only when asked; fp16 keeps ~3 significant digits.
    "fp16": ParityConfig(atol=5e-2, rtol=5e-2, min_top1_agreement=0.99),
    # INT8 moves logits by whole quantization steps: agreement is the meaningful check.
    "int8": ParityConfig(atol=1e9, rtol=0.0, min_top1_agreement=0.8),
}


def parity_for(cfg: TensorRTConfig, override: ParityConfig | None) -> ParityConfig:
    return override if override is not None else DEFAULT_PARITY[cfg.precision]


def calibration_frames(cfg: TensorRTConfig, dataset: Any) -> np.ndarray | None:
    """INT8 calibration frames chosen by ``cfg.calibration`` (a calibration recipe); None otherwise."""
    if cfg.precision != "int8":
        return None
    from edgekd import resources
    from edgekd.data.calibration import load_calibration_recipe, select_calibration

    recipe = load_calibration_recipe(resources.resolve("calibration", cfg.calibration))
    return select_calibration(dataset, recipe).samples(dataset)


def tensorrt_engine_stage(
    onnx_path: Path,
    out_dir: Path,
    cfg: TensorRTConfig,
    *,
    parity_samples: np.ndarray,
    reference: np.ndarray,
    calibration: np.ndarray | None,
    target_shape: list[int] | None = None,
    parity: ParityConfig | None = None,
    required: bool = False,
    log: Any = None,
) -> Path | None:
    """Build the engine for ``onnx_path`` into ``out_dir``; None when TensorRT is absent and not required.

    Args:
        onnx_path: the FP32 ONNX export.
        cfg: precision, INT8 route, profile batches, cache folder.
        parity_samples / reference: frames and the PyTorch logits they must reproduce.
        calibration: INT8 calibration frames (calibration recipe); unused otherwise.
        required: raise RuntimeUnavailable instead of skipping when TensorRT cannot build here.
    """
    log = log or (lambda _msg: None)
    if required:
        require_tensorrt()
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        log(f"export: TensorRT engine skipped — {reason}")
        return None
    source = onnx_path
    if resolve_int8_mode(cfg, tensorrt_major_version()) == "qdq":
        from edgekd.export.tensorrt.qdq import quantize_for_tensorrt

        source = out_dir / f"{onnx_path.stem}.trt-qdq.onnx"
        quantize_for_tensorrt(onnx_path, source, calibration)
        write_manifest(source, "onnx-qdq-tensorrt", parents=[onnx_path], config=to_dict(cfg))
    build = engine_from_onnx(source, cfg, target_shape=target_shape, calibration_samples=calibration)
    engine_path = out_dir / f"{onnx_path.stem}.{cfg.precision}.engine"
    manifest_path(engine_path).unlink(missing_ok=True)  # an earlier engine's record is not this one's
    with atomic_path(engine_path) as tmp:
        shutil.copyfile(build.path, tmp)
        if build.sha256 is not None and sha256_file(tmp) != build.sha256:
            raise InputFileError(
                f"engine cache file {build.path} changed while it was copied to {engine_path}",
                hint="run the export again; nothing else may write the TensorRT cache folder meanwhile",
            )

    from edgekd.backends.base import SessionOptions, session_from_artifact

    session = session_from_artifact("tensorrt", engine_path, SessionOptions(precision="auto"))
    batch = session.static_batch
    outputs = [
        session.run(parity_samples[i : i + (batch or len(parity_samples))])
        for i in range(0, len(parity_samples), batch or len(parity_samples))
    ]
    report = compare_outputs(
        reference, np.concatenate(outputs), parity_for(cfg, parity), f"TensorRT {cfg.precision} engine"
    )
    metrics = {
        "precision": cfg.precision,
        "executed_precision": session.executed_precision,
        "build": build.to_dict(),
        "parity": report.to_dict(),
    }
    write_manifest(engine_path, "tensorrt-engine", parents=[source], config=to_dict(cfg), metrics=metrics)
    if not report.passed:
        engine_path.unlink(missing_ok=True)  # a wrong engine is not left for the bench to find
        report.raise_if_failed()
    how = "from the engine cache" if build.cached else f"built in {build.build_s:.1f} s"
    log(f"export: {engine_path} — TensorRT {build.tensorrt_version}, {how}; {report.summary()}")
    return engine_path
