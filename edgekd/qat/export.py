"""Export a fake-quant student as Q/DQ ONNX, verified on the real runtimes.

Flow: the TorchScript exporter (``edgekd.export.onnx_export``, opset >= 13) turns the
fake-quant ops into QuantizeLinear/DequantizeLinear -> ``finalize_qdq`` stores weights as
int8 and biases as int32 -> every Conv/Gemm must read its input and weight through a
DequantizeLinear -> ONNX Runtime (integer kernels, and with graph optimisations off, the
float emulation of the same graph) and OpenVINO run it on real frames and must agree with
the fake-quant torch model -> the file is renamed into place, with its manifest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, write_manifest
from edgekd.errors import ParityError, RuntimeUnavailable
from edgekd.qat.config import QatConfig, QatError
from edgekd.qat.onnx_qdq import finalize_qdq, unquantized_compute_nodes
from edgekd.qat.prepare import QatModel, export_form

_OV_BATCH = 64


@dataclasses.dataclass
class RuntimeCheck:
    """One runtime's outputs on the exported file against the fake-quant torch model.

    ``mean_abs_error`` is in logits; ``relative_error`` divides it by the standard
    deviation of the torch logits. ``skipped`` holds the reason a runtime did not run.
    """

    runtime: str
    frames: int = 0
    top1_agreement: float = 0.0
    mean_abs_error: float = 0.0
    max_abs_error: float = 0.0
    relative_error: float = 0.0
    executes: str = ""
    skipped: str | None = None

    def passed(self, cfg: QatConfig) -> bool:
        return self.skipped is not None or (
            self.top1_agreement >= cfg.min_top1_agreement and self.relative_error <= cfg.max_logit_error
        )


@dataclasses.dataclass
class QatExportReport:
    """What was written: graph rewrite counts, Q/DQ description, op coverage, runtime checks."""

    path: str
    rewrite: dict[str, int]
    quantized: dict[str, Any]
    coverage: dict[str, Any]
    checks: list[RuntimeCheck]
    onnxruntime_kernels: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare(runtime: str, reference: np.ndarray, candidate: np.ndarray, executes: str = "") -> RuntimeCheck:
    """Agreement and logit error of ``candidate`` [N, K] against ``reference`` [N, K]."""
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    spread = float(np.std(reference)) or 1.0
    return RuntimeCheck(
        runtime=runtime,
        frames=len(reference),
        top1_agreement=float(np.mean(candidate.argmax(1) == reference.argmax(1))),
        mean_abs_error=float(diff.mean()),
        max_abs_error=float(diff.max()),
        relative_error=float(diff.mean()) / spread,
        executes=executes,
    )


def torch_logits(model: QatModel, frames: np.ndarray) -> np.ndarray:
    """Eval-mode logits of the fake-quant model in its export form, float32 [N, K]."""
    from edgekd.export.onnx_export import torch_reference_outputs

    with export_form(model):
        return torch_reference_outputs(model, frames)


def _export_raw(model: QatModel, frames: np.ndarray, out: Path, opset: int) -> None:
    from edgekd.export.onnx_export import ExportConfig, export_onnx
    from edgekd.export.parity import ParityConfig

    # Parity of this intermediate file is checked below, after the rewrite, with QAT's own rule.
    loose = ParityConfig(atol=math.inf, rtol=0.0, min_top1_agreement=0.0)
    with export_form(model):
        export_onnx(model, frames[:8], out, ExportConfig(opset=opset, openvino=False, parity=loose))


def openvino_logits(path: Path, frames: np.ndarray) -> np.ndarray | None:
    """OpenVINO CPU (f32 hint: INT8 layers stay INT8) logits [N, K] of an ONNX file; None when
    OpenVINO is not installed."""
    return _openvino(path, frames)[0]


def _openvino(path: Path, frames: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(logits or None, what it executes in / why it did not run)."""
    from edgekd.export.openvino_export import compile_cpu, openvino_execution_precision

    try:
        compiled = compile_cpu(path, precision="f32")
    except RuntimeUnavailable as exc:  # not installed: recorded with its reason, never faked
        return None, exc.one_line()
    from edgekd.runtime.openvino_open import ov_predict

    return ov_predict(compiled, frames, _OV_BATCH), openvino_execution_precision(compiled)


def _run_openvino(path: Path, frames: np.ndarray, reference: np.ndarray) -> RuntimeCheck:
    logits, executes = _openvino(path, frames)
    if logits is None:
        return RuntimeCheck("openvino", skipped=executes)
    return compare("openvino", reference, logits, executes)


def _onnxruntime_kernels(path: Path, work: Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime really executes after its fusions (QLinearConv, QGemm...)."""
    import onnx

    from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort

    optimized = work / "ort-optimized.onnx"
    open_ort(path, OrtSettings(optimized_model_path=os.fspath(optimized)))
    ops = Counter(node.op_type for node in onnx.load(optimized).graph.node)
    return dict(ops.most_common())


def export_qat_onnx(
    model: QatModel,
    frames: np.ndarray,
    path: str | os.PathLike[str],
    cfg: QatConfig,
    *,
    parents: list[str | os.PathLike[str]] | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> QatExportReport:
    """Write ``model`` as Q/DQ ONNX at ``path`` (and ``<path>.json``) once every check passed.

    Args:
        model: a calibrated (and usually fine-tuned) ``QatModel``.
        frames: float32 [N, *frame] real frames the runtimes are checked on (N >= 1).
        path: target ``.onnx``; nothing is written there unless every check passes.
        cfg: opset, bias form and the agreement/logit-error rules.

    Raises:
        QatError: a Conv/Gemm without Q/DQ on its input or weight. ParityError: ONNX
        Runtime or OpenVINO disagrees with the fake-quant model beyond ``cfg``'s rules.
    """
    import onnx

    from edgekd.export.onnx_export import as_samples, ort_session, run_onnxruntime
    from edgekd.quantize.coverage import describe_quantized, op_coverage

    frames = as_samples(frames, "QAT check frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        raw = work / "raw.onnx"
        _export_raw(model, frames, raw, cfg.opset)
        graph = onnx.load(os.fspath(raw))
        rewrite = finalize_qdq(graph, int32_bias=cfg.bias == "int32")
        onnx.checker.check_model(graph, full_check=True)
        final = work / path.name
        onnx.save(graph, os.fspath(final))
        missing = unquantized_compute_nodes(graph)
        if missing:
            raise QatError(
                f"the exported QAT graph runs {len(missing)} Conv/Gemm node(s) without Q/DQ: {missing[:4]}",
                hint="quantize only students built from nn.Conv*/nn.Linear modules",
            )
        reference = torch_logits(model, frames)
        checks = [
            compare("onnxruntime", reference, run_onnxruntime(final, frames), "integer kernels"),
            compare(
                "onnxruntime-emulated",
                reference,
                run_onnxruntime(ort_session(final, optimize=False), frames),
                "float Q/DQ emulation",
            ),
            _run_openvino(final, frames, reference),
        ]
        report = QatExportReport(
            path=str(path),
            rewrite=rewrite,
            quantized=describe_quantized(final),
            coverage=op_coverage(final),
            checks=checks,
            onnxruntime_kernels=_onnxruntime_kernels(final, work),
        )
        _raise_if_disagrees(report, cfg)
        with atomic_path(path) as tmp:
            os.replace(final, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_manifest(
        path,
        "onnx-qat-int8",
        parents=parents,
        config=config,
        metrics={**(metrics or {}), "export": report.to_dict()},
    )
    return report


def _raise_if_disagrees(report: QatExportReport, cfg: QatConfig) -> None:
    for check in report.checks:
        if check.passed(cfg):
            continue
        emulated = next(c for c in report.checks if c.runtime == "onnxruntime-emulated")
        kernels_only = check.runtime == "onnxruntime" and emulated.passed(cfg)
        hint = (
            "the float emulation agrees, so ONNX Runtime's integer kernels saturate on this CPU: "
            "set qat.weight_bits: 7"
            if kernels_only and cfg.weight_bits == 8
            else "check the graph with `edgekd bench`; lower qat.min_top1_agreement only with a reason"
        )
        raise ParityError(
            f"{check.runtime} on the QAT ONNX disagrees with the fake-quant model: top-1 agreement "
            f"{check.top1_agreement:.2%} (need {cfg.min_top1_agreement:.2%}), mean |dlogit| "
            f"{check.relative_error:.3f} std (need <= {cfg.max_logit_error})",
            hint=hint,
        )
