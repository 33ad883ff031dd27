"""The TensorRT step of the export stage: ONNX -> engine in the run folder, parity-checked.

For explicit INT8 (``int8_mode`` qdq) the ONNX is first quantized by the ``tensorrt-qdq``
quantizer (symmetric Q/DQ, see :mod:`edgekd.quantize.tensorrt_qdq`). The engine is built (or
taken from the engine cache, see ``builder.engine_from_onnx``), placed next to the ONNX as
``<stem>.<precision>.engine`` with a manifest, and run on the parity frames through the
TensorRT backend: the same check the ONNX and OpenVINO exports pass, with tolerances that fit
the precision (reduced precision changes logits a little, so FP16 allows percent-level error
and INT8 is judged on top-1 agreement, as the ONNX Runtime INT8 check is).

Where TensorRT or a CUDA GPU is absent: an explicit request (``edgekd export --tensorrt``)
fails in one line; a recipe that merely lists a TensorRT engine logs the reason and goes on,
so one recipe serves a CPU laptop and a GPU box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import write_manifest
from edgekd.config import to_dict
from edgekd.export.parity import ParityConfig, ParityReport, compare_outputs
from edgekd.export.tensorrt.builder import (
    engine_from_onnx,
    require_tensorrt,
    tensorrt_major_version,
    tensorrt_unavailable_reason,
)
from edgekd.export.tensorrt.plan import TensorRTConfig, resolve_int8_mode
from edgekd.export.tensorrt.stage import engine_path_for, parity_for, place_engine


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
        source = _qdq_source(onnx_path, out_dir, cfg, calibration)
    build = engine_from_onnx(source, cfg, target_shape=target_shape, calibration_samples=calibration)
    engine_path = engine_path_for(onnx_path, out_dir, cfg)
    place_engine(build, engine_path)
    report, executed = _engine_parity(engine_path, parity_samples, reference, parity_for(cfg, parity), cfg)
    metrics = {
        "precision": cfg.precision,
        "executed_precision": executed,
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


def _qdq_source(onnx_path: Path, out_dir: Path, cfg: TensorRTConfig, calibration: np.ndarray | None) -> Path:
    """``<stem>.trt-qdq.onnx``: the symmetric Q/DQ ONNX explicit INT8 is built from, with its manifest."""
    from edgekd.pipeline.conversion import quantize_step
    from edgekd.quantize.config import QuantizeConfig
    from edgekd.quantize.protocol import QuantizeInputs
    from edgekd.quantize.quantizers import quantizer_for

    # Entropy ranges: the choice of TensorRT's own INT8 calibrator.
    qcfg = QuantizeConfig(
        runtime="tensorrt-qdq",
        activation_type="int8",
        weight_type="int8",
        reduce_range=False,
        calibration_method="entropy",
        calibration=cfg.calibration,
        max_accuracy_drop=None,
    )
    source = quantizer_for(qcfg).output_path(out_dir, onnx_path)
    result = quantize_step(onnx_path, source, qcfg, QuantizeInputs(calibration))
    write_manifest(source, result.kind, parents=[onnx_path], config=to_dict(cfg))
    return source


def _engine_parity(
    engine_path: Path, frames: np.ndarray, reference: np.ndarray, rule: ParityConfig, cfg: TensorRTConfig
) -> tuple[ParityReport, str | None]:
    """The engine's logits on ``frames`` (in its static batch when it has one) against
    ``reference``, and the precision the engine really executes."""
    from edgekd.backends.base import SessionOptions, session_from_artifact

    session = session_from_artifact("tensorrt", engine_path, SessionOptions(precision="auto"))
    step = session.static_batch or len(frames)
    outputs = [session.run(frames[i : i + step]) for i in range(0, len(frames), step)]
    report = compare_outputs(reference, np.concatenate(outputs), rule, f"TensorRT {cfg.precision} engine")
    return report, session.executed_precision
