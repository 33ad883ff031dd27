"""The ``quantize:`` section of a recipe (QuantizeConfig) and the quantizers' error type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgekd.errors import ConfigError, EdgeKDError
from edgekd.registry import suggestion


class QuantizeError(EdgeKDError):
    """A quantizer (ONNX Runtime, NNCF) rejected the model."""


class NoSpeedupError(EdgeKDError):
    """INT8 was measured no faster than FP32 on this machine and ``require_speedup`` is set."""


@dataclass
class QuantizeConfig:
    """Static INT8 settings.

    ``runtime``: the quantizer (a name in ``edgekd.quantize.quantizers.QUANTIZERS``):
    "onnxruntime" (QDQ ONNX), "openvino" (NNCF on the OpenVINO IR), "onnxruntime-dynamic",
    "tensorrt-qdq" (symmetric Q/DQ ONNX for TensorRT) or one a user's module registered.
    ``activation_type``: "auto" builds uint8 and int8 activations and keeps the faster
    on this CPU. ``reduce_range``: 7-bit weights, which avoids int16 saturation in the
    U8S8 kernels of x86 CPUs without VNNI (AVX2 only) at the cost of one bit of weight
    precision; "auto" turns it on only when a probe measures saturation here.
    ``calibration_method``: how activation ranges are set from the calibration frames, on both
    runtimes (NNCF: "minmax" -> global extremes; "entropy" and "percentile" -> NNCF's own mean
    of per-frame extremes, which clips loud frames).
    ``calibration``: calibration recipe name or path, resolved by the caller.
    ``min_top1_agreement``: fraction in [0, 1] of eval frames whose INT8 argmax must
    equal FP32's. ``max_accuracy_drop``: the most labelled accuracy (a fraction, 0.02 =
    two points) INT8 may lose against FP32 on the validation split; checked by the
    pipeline stage, which has the labels. On noisy data (low-SNR radio frames) many
    frames sit near a decision boundary, so agreement is loose and accuracy decides.
    ``require_speedup``: fail (instead of warn) when INT8 is not faster than FP32 at
    batch 1 on this machine. ``accuracy_aware``: when the drop exceeds
    ``max_accuracy_drop``, keep the most sensitive layers in float, one at a time, at
    most ``max_float_nodes`` of them. ``float_input_conv``: keep a convolution that reads
    the model input with at most 4 channels (RGB images, I/Q frames) in float on ONNX
    Runtime. Its inner dimension (channels x kernel, 27 for a 3x3 RGB conv) is too short for
    the integer GEMM kernels: on an AVX2 CPU it ran 0.43x as fast in INT8, and on an
    AVX-512 VNNI CPU the whole MobileNetV2 0.5x ran 1.70x FP32's speed with it float against
    1.53x with it INT8, at the same accuracy within the standard error (docs/benchmarks.md).
    """

    runtime: str = "onnxruntime"
    activation_type: Literal["auto", "uint8", "int8"] = "auto"
    weight_type: Literal["int8", "uint8"] = "int8"
    per_channel: bool = True
    reduce_range: Literal["auto"] | bool = "auto"
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration: str = "modrec-stratified-snr"
    min_top1_agreement: float = 0.9
    max_accuracy_drop: float | None = 0.02
    require_speedup: bool = False
    accuracy_aware: bool = False
    max_float_nodes: int = 8
    float_input_conv: bool = True

    def validate(self) -> None:
        from edgekd.quantize.quantizers import QUANTIZERS

        if self.runtime not in QUANTIZERS:
            raise ConfigError(
                f"quantize.runtime must be one of {', '.join(map(repr, QUANTIZERS.names()))}, "
                f"got {self.runtime!r}",
                hint=suggestion(str(self.runtime), QUANTIZERS.names(), "quantizers"),
            )
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ConfigError(
                f"quantize.max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}",
                hint="it is a fraction: 0.02 allows two points of accuracy lost to INT8",
            )
        if not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ConfigError(
                f"quantize.min_top1_agreement must be in [0, 1], got {self.min_top1_agreement}",
                hint="it is the fraction of eval frames whose class must not change, e.g. 0.9",
            )
        if self.activation_type == "int8" and self.weight_type == "uint8":
            raise ConfigError(
                "quantize: int8 activations with uint8 weights is not a format ONNX Runtime supports",
                hint="use weight_type: int8",
            )
        if not str(self.calibration).strip():
            raise ConfigError("quantize.calibration is empty", hint="name a calibration recipe")
        if self.max_float_nodes < 1:
            raise ConfigError(
                f"quantize.max_float_nodes must be >= 1, got {self.max_float_nodes}",
                hint="it bounds how many layers accuracy-aware quantization may keep in float, e.g. 8",
            )
        if self.accuracy_aware and self.max_accuracy_drop is None:
            raise ConfigError(
                "quantize.accuracy_aware needs quantize.max_accuracy_drop",
                hint="set max_accuracy_drop, e.g. 0.005 for half a point",
            )
