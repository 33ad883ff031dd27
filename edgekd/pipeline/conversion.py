"""The one export -> quantize -> verify sequence, and its steps.

The pipeline's stages (``export_stage``, ``quantize_stage``), deploy's artifact builds
(``edgekd.deploy.build``) and the QAT report's post-training baseline (``edgekd.qat.distill``)
all convert a student through these functions, so an export is checked the same way and a
quantizer is picked, fed and judged the same way wherever it runs:

- :func:`export_onnx_step`: PyTorch -> ONNX, checked against PyTorch on real frames;
- :func:`export_openvino_step`: ONNX -> OpenVINO IR, checked against a reference's logits;
- :func:`quantize_step`: FP32 -> INT8 through the quantizer ``quantize.runtime`` names
  (:data:`edgekd.quantize.quantizers.QUANTIZERS`), checked for top-1 agreement on eval frames;
- :func:`verify_int8_accuracy`: labelled accuracy of INT8 against FP32 on the validation split;
- :func:`convert`: the sequence, for callers that want the INT8 model of a network in one call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.quantize.protocol import QuantizeInputs, QuantizeResult


def export_onnx_step(
    model: Any,
    frames: np.ndarray,
    out: Path,
    cfg: Any,
    *,
    source: str | os.PathLike[str] | None = None,
) -> Any:
    """ONNX export of ``model`` at ``out`` checked against PyTorch on ``frames`` ``[N, ...]``;
    returns the ParityReport (ParityError, nothing written, when it fails)."""
    from edgekd.export.onnx_export import export_onnx

    return export_onnx(model, frames, out, cfg, source=source)


def export_openvino_step(
    onnx_path: Path,
    out: Path,
    frames: np.ndarray,
    parity: Any,
    *,
    reference: np.ndarray | None = None,
    reference_name: str = "the reference model",
) -> Any:
    """OpenVINO IR of ``onnx_path`` at ``out`` (+ ``.bin``), checked against ``reference`` (the
    logits of the network on ``frames``; default: ONNX Runtime's on the ONNX itself)."""
    from edgekd.export.onnx_export import run_onnxruntime
    from edgekd.export.openvino_export import export_openvino

    if reference is None:
        reference = run_onnxruntime(onnx_path, frames)
    return export_openvino(onnx_path, out, frames, reference, parity, reference_name=reference_name)


def quantize_step(source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
    """INT8 of ``source`` at ``out`` by the quantizer ``cfg.runtime`` names (see QuantizeConfig)."""
    from edgekd.quantize.quantizers import quantizer_for

    return quantizer_for(cfg).quantize(source, out, cfg, inputs)


def verify_int8_accuracy(
    result: QuantizeResult, fp32: Path, val: Any, max_drop: float | None
) -> dict[str, Any]:
    """Labelled accuracy of FP32 (``fp32``, opened by the INT8 model's runtime) and INT8 on
    ``val`` (streamed when lazy) through the bench evaluator. When INT8 loses more than
    ``max_drop`` (a fraction), its files are removed and ParityError names both accuracies."""
    from edgekd.errors import ParityError
    from edgekd.pipeline.measure import accuracy_of
    from edgekd.quantize.quantizers import quantizer_for

    fp32_acc = accuracy_of(result.backend, fp32, val)
    int8_acc = accuracy_of(result.backend, result.path, val)
    verdict = {"fp32": fp32_acc, "int8": int8_acc, "drop": fp32_acc - int8_acc, "frames": len(val)}
    if max_drop is not None and fp32_acc - int8_acc > max_drop:
        for path in quantizer_for(result.quantizer).output_files(result.path):
            path.unlink(missing_ok=True)
        raise ParityError(
            f"INT8 loses {(fp32_acc - int8_acc) * 100:.2f} points of accuracy "
            f"on {len(val)} validation frames "
            f"(FP32 {fp32_acc:.2%}, INT8 {int8_acc:.2%}; allowed {max_drop * 100:.2f})",
            hint="try quantize.calibration_method: entropy or percentile, more calibration samples, "
            "or raise quantize.max_accuracy_drop",
        )
    return verdict


@dataclass
class Conversion:
    """What :func:`convert` wrote: the ONNX export and its parity with PyTorch, the OpenVINO
    IR when the export config asks for one, and the INT8 model."""

    onnx: Path
    export: Any
    int8: QuantizeResult
    openvino: Path | None = None


def convert(
    model: Any,
    parity_frames: np.ndarray,
    out_dir: Path,
    export_cfg: Any,
    quantize_cfg: Any,
    calibration: np.ndarray,
    *,
    stem: str = "student",
    eval_samples: np.ndarray | None = None,
    threads: int | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Conversion:
    """Export ``model`` and quantize it in ``out_dir``: ``<stem>.onnx`` (+ ``<stem>.xml`` with
    ``export_cfg.openvino``) checked against PyTorch on ``parity_frames``, then INT8 by the
    quantizer ``quantize_cfg.runtime`` names, calibrated on ``calibration`` ``[N, ...]`` and timed
    with ``threads`` (None: every usable core), its top-1 agreement with FP32 checked on
    ``eval_samples`` when given.
    """
    from edgekd.quantize.quantizers import quantizer_for

    onnx_path = out_dir / f"{stem}.onnx"
    parity = export_onnx_step(model, parity_frames, onnx_path, export_cfg, source=source)
    xml = None
    if export_cfg.openvino:
        xml = out_dir / f"{stem}.xml"
        export_openvino_step(onnx_path, xml, parity_frames, export_cfg.parity)
    quantizer = quantizer_for(quantize_cfg)
    inputs = QuantizeInputs(calibration, threads=threads, eval_samples=eval_samples)
    int8 = quantize_step(onnx_path, quantizer.output_path(out_dir, onnx_path), quantize_cfg, inputs)
    return Conversion(onnx_path, parity, int8, xml)
