"""The built-in quantizers, registered in :data:`QUANTIZERS` (import this module to use them).

Each is the thin per-runtime half of :class:`edgekd.quantize.protocol.BaseQuantizer`: it hands
the shared inputs to its runtime's algorithm module (imported on use, so listing quantizers
imports no runtime) and wraps that module's report in one :class:`QuantizeResult`.

- ``onnxruntime``: ONNX Runtime static QDQ (``ort_static``), accuracy-aware
  (``accuracy_aware``) when ``quantize.accuracy_aware`` is set.
- ``onnxruntime-dynamic``: dynamic INT8, written only where measured faster (``dynamic``).
- ``openvino``: NNCF on the OpenVINO IR, with accuracy control when ``accuracy_aware``.
- ``tensorrt-qdq``: symmetric Q/DQ ONNX for TensorRT's explicit quantization (``tensorrt_qdq``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError
from edgekd.quantize.protocol import QUANTIZERS, BaseQuantizer, QuantizeInputs, Quantizer, QuantizeResult

__all__ = ["QUANTIZERS", "quantizer_for"]


def quantizer_for(cfg_or_name: Any) -> Quantizer:
    """The quantizer a ``QuantizeConfig`` (its ``runtime``) or a registry name picks."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.runtime
    quantizer = QUANTIZERS.get(name)()
    quantizer.name = name  # the name it is registered under is the one its results carry
    return quantizer


@QUANTIZERS.register("onnxruntime")
class OrtStaticQuantizer(BaseQuantizer):
    """ONNX Runtime static INT8 (QDQ ONNX); accuracy-aware needs ``inputs.evaluate``."""

    name = "onnxruntime"
    backend = "onnxruntime"
    kind = "onnx-int8"
    suffix = ".int8.onnx"
    build_recipe = "ort-int8"

    def build(self, source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
        if cfg.accuracy_aware:
            from edgekd.quantize.accuracy_aware import quantize_onnx_accuracy_aware

            if inputs.evaluate is None:
                raise ConfigError(
                    "accuracy-aware INT8 needs labelled validation frames to evaluate on",
                    hint="quantize through `edgekd quantize` or `edgekd run`: they pass the validation split",
                )
            aa = quantize_onnx_accuracy_aware(
                source,
                out,
                inputs.calibration,
                cfg,
                inputs.evaluate,
                eval_samples=inputs.eval_samples,
                verbose=inputs.verbose,
                threads=inputs.timing_threads(),
            )
            return self.result(out, aa, aa.summary(), key="accuracy_aware")
        from edgekd.quantize.ort_static import quantize_onnx_static

        report = quantize_onnx_static(
            source,
            out,
            inputs.calibration,
            cfg,
            eval_samples=inputs.eval_samples,
            verbose=inputs.verbose,
            threads=inputs.timing_threads(),
        )
        summary = f"activations {report.activation_type}: {report.choice_reason}"
        if report.assessment is not None:
            summary += f"; {report.assessment.summary()}"
        return self.result(out, report, summary)


@QUANTIZERS.register("onnxruntime-dynamic")
class OrtDynamicQuantizer(BaseQuantizer):
    """ONNX Runtime dynamic INT8, refused (DynamicNotWorthIt) where not measured faster."""

    name = "onnxruntime-dynamic"
    backend = "onnxruntime"
    kind = "onnx-int8-dynamic"
    suffix = ".int8-dynamic.onnx"

    def build(self, source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
        from edgekd.quantize.dynamic import quantize_onnx_dynamic

        verdict = quantize_onnx_dynamic(source, out, inputs.calibration, threads=inputs.timing_threads())
        return self.result(out, verdict, verdict.reason)


@QUANTIZERS.register("openvino")
class OpenVINOQuantizer(BaseQuantizer):
    """NNCF INT8 of the FP32 model as an OpenVINO IR (``.xml`` + ``.bin``); accuracy control
    on ``inputs.validation`` when ``accuracy_aware``."""

    name = "openvino"
    backend = "openvino"
    kind = "openvino-int8"
    suffix = ".int8.xml"
    build_recipe = "openvino-int8"
    sidecars = (".bin",)

    def fp32_reference(self, source: Path) -> Path:
        """The IR exported beside the ONNX when there is one (what the bench runs), else the ONNX."""
        xml = source.with_suffix(".xml")
        return xml if source.suffix == ".onnx" and xml.is_file() else source

    def build(self, source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
        from edgekd.quantize.nncf_openvino import LabelledFrames, quantize_openvino

        controlled = cfg.accuracy_aware and inputs.validation is not None
        report = quantize_openvino(
            source,
            out,
            inputs.calibration,
            cfg,
            eval_samples=inputs.eval_samples,
            validation=LabelledFrames(inputs.validation) if controlled else None,
            threads=inputs.timing_threads(),
        )
        return self.result(out, report, "NNCF INT8 (OpenVINO IR)")


@QUANTIZERS.register("tensorrt-qdq")
class TensorRTQdqQuantizer(BaseQuantizer):
    """Symmetric INT8 Q/DQ ONNX, the form TensorRT's explicit quantization builds from."""

    # The file is ONNX that ONNX Runtime runs too (on the CPU, to check it); TensorRT builds from it.
    name = "tensorrt-qdq"
    backend = "onnxruntime"
    kind = "onnx-qdq-tensorrt"
    suffix = ".trt-qdq.onnx"

    def build(self, source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
        from edgekd.quantize.tensorrt_qdq import quantize_for_tensorrt

        summary = quantize_for_tensorrt(
            source,
            out,
            inputs.calibration,
            per_channel=cfg.per_channel,
            calibration_method=cfg.calibration_method,
        )
        return self.result(out, summary, f"{summary['quantize_linear']} QuantizeLinear, symmetric int8")
