"""Quantization-aware distillation: fake-quant fine-tuning against the teacher, Q/DQ ONNX export.

    from edgekd.qat import QatConfig, qat_distill
    result = qat_distill(student, teacher, dataset, QatConfig(), "runs/qat")
    print(result.table())        # FP32 / PTQ INT8 / QAT INT8 accuracy side by side

Modules: ``fake_quant`` (quantizers), ``modules`` (quantized Conv/Linear/pool wrappers),
``prepare`` (BatchNorm folding, calibration, export form), ``equalize`` (cross-layer
equalization of channel ranges), ``onnx_qdq`` (graph rewrite to
int8 weights / int32 biases), ``export`` (runtime-checked export), ``distill`` (the flow),
``report`` (accuracy table), ``files`` (the same flow from artifact files, for the CLI).
"""

from __future__ import annotations

from edgekd.qat.config import QatConfig, QatError
from edgekd.qat.distill import QatResult, qat_distill
from edgekd.qat.equalize import equalize_cross_layer
from edgekd.qat.export import QatExportReport, export_qat_onnx
from edgekd.qat.prepare import QatModel, calibrate, export_form, prepare_qat

__all__ = [
    "QatConfig",
    "QatError",
    "QatExportReport",
    "QatModel",
    "QatResult",
    "calibrate",
    "equalize_cross_layer",
    "export_form",
    "export_qat_onnx",
    "prepare_qat",
    "qat_distill",
]
