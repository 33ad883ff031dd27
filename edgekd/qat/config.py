"""Typed settings of quantization-aware distillation (``QatConfig``) and its error type.

Recipe-style form (every key optional)::

    activations: uint8        # uint8: asymmetric (ONNX Runtime on x86); int8: symmetric (TensorRT)
    bias: int32               # int32: on the s_in*s_w grid (ORT QLinearConv); float: TensorRT form
    weight_bits: auto         # 8; 7 = ORT's reduce_range (x86 without VNNI); auto: 7 there, else 8
    equalize: true            # cross-layer equalization of channel ranges before calibration
    ranges: learned           # learned (LSQ) or frozen after calibration
    range_lr_scale: 10.0      # learned ranges move this many times faster than the weights
    freeze_ranges_after: null # optimizer steps after which learned ranges stop (null: never)
    calibration_frames: 256   # training frames, stratified by SNR when the data has it
    kd: {loss: kd, temperature: 4.0, alpha: 0.7}
    train: {epochs: 3, lr: 0.0003, weight_decay: 0.0, schedule: cosine, batch_size: 128}
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Literal

from edgekd.distill.config import KDConfig, TrainConfig
from edgekd.errors import ConfigError, EdgeKDError

MAX_QAT_EPOCHS = 50  # fine-tuning, not training: a bound that catches a misplaced training config


class QatError(EdgeKDError):
    """Quantization-aware training or its export failed a check (coverage, runtime parity)."""


def x86_without_vnni() -> bool:
    """True on an x86-64 Linux CPU whose flags list AVX2 but no VNNI (avx512_vnni / avx_vnni)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:  # not Linux: no way to read the flags cheaply; assume a modern CPU
        return False
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags)


def default_qat_train() -> TrainConfig:
    # A few epochs at a tenth of a typical training LR: QAT adjusts a trained student,
    # and a large LR undoes what the FP32 training learned before the ranges settle.
    return TrainConfig(epochs=3, lr=3e-4, weight_decay=0.0, batch_size=128, schedule="cosine")


@dataclasses.dataclass
class QatConfig:
    """Quantization-aware distillation: fake-quant format, ranges, training and checks.

    ``min_top1_agreement``: fraction of evaluation frames on which the exported ONNX (run
    by ONNX Runtime, and by OpenVINO) must pick the fake-quant torch model's class.
    ``max_logit_error``: bound on the mean |logit difference| between them, in units of the
    logits' standard deviation (integer kernels round differently than float emulation).
    ``equalize``: cross-layer equalization (Nagel et al. 2019) of the BN-folded student
    before calibration: a function-preserving per-channel rescaling that balances the
    channel ranges each per-tensor activation scale has to cover (``edgekd.qat.equalize``).
    ``weight_bits``: "auto" is 7 on an x86 CPU without VNNI, where ONNX Runtime's u8*s8
    kernels add pairs of products in saturating 16-bit lanes (what its ``reduce_range``
    avoids), else 8; it describes the CPU running QAT, so set it for another target.
    ``range_lr_scale``: learned activation ranges take steps this many times larger (in
    log-scale) than the LR gives the weights.
    ``ptq_baseline``: also build ONNX Runtime static PTQ INT8 for the report.
    ``eval_split``: split the report scores (training picks its best epoch on ``val``).
    """

    activations: Literal["uint8", "int8"] = "uint8"
    bias: Literal["int32", "float"] = "int32"
    weight_bits: Literal["auto"] | int = "auto"
    equalize: bool = True
    ranges: Literal["learned", "frozen"] = "learned"
    range_lr_scale: float = 10.0
    freeze_ranges_after: int | None = None
    calibration_frames: int = 256
    fold_batchnorm: bool = True
    opset: int = 17
    min_top1_agreement: float = 0.98
    max_logit_error: float = 0.05
    ptq_baseline: bool = True
    eval_split: Literal["val", "test"] = "test"
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    train: TrainConfig = dataclasses.field(default_factory=default_qat_train)

    def resolved_weight_bits(self) -> int:
        """7 or 8 (``"auto"`` resolved for this CPU, see the class docstring)."""
        if self.weight_bits == "auto":
            return 7 if x86_without_vnni() else 8
        return int(self.weight_bits)

    def validate(self) -> None:
        if self.weight_bits not in ("auto", 7, 8):
            raise ConfigError(
                f"qat.weight_bits must be 7 or 8, got {self.weight_bits}",
                hint="auto, 8, or 7 for x86 CPUs without VNNI (ONNX Runtime's reduce_range)",
            )
        if not self.range_lr_scale > 0:
            raise ConfigError(f"qat.range_lr_scale must be > 0, got {self.range_lr_scale}", hint="e.g. 10")
        if self.freeze_ranges_after is not None and self.freeze_ranges_after < 0:
            raise ConfigError(f"qat.freeze_ranges_after must be >= 0 or null, got {self.freeze_ranges_after}")
        if self.calibration_frames < 1:
            raise ConfigError(f"qat.calibration_frames must be >= 1, got {self.calibration_frames}")
        if not 13 <= self.opset <= 20:
            raise ConfigError(
                f"qat.opset must be in [13, 20], got {self.opset}",
                hint="per-channel QuantizeLinear needs opset 13; use 17",
            )
        if not 0.0 <= self.min_top1_agreement <= 1.0:
            raise ConfigError(f"qat.min_top1_agreement must be in [0, 1], got {self.min_top1_agreement}")
        if not self.max_logit_error > 0:
            raise ConfigError(f"qat.max_logit_error must be > 0, got {self.max_logit_error}")
        if self.train.epochs > MAX_QAT_EPOCHS:
            raise ConfigError(
                f"qat.train.epochs is {self.train.epochs}; quantization-aware fine-tuning is bounded "
                f"to {MAX_QAT_EPOCHS}",
                hint="a few epochs at a small LR (e.g. 3 at 3e-4) fine-tune a trained student",
            )
        self.train.validate()
        self.kd.validate()
