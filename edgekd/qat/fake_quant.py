"""Fake quantizers that simulate, in float, exactly the INT8 arithmetic a runtime executes.

- ``WeightQuantizer``: per-output-channel symmetric int8, ``scale_c = max|w_c| / qmax``
  (qmax 127, or 63 with 7-bit weights for x86 CPUs without VNNI), zero point 0. The
  scale follows the weights as they train (it is not learned).
- ``ActivationQuantizer``: per-tensor; ``uint8`` is asymmetric (zero point in [0, 255],
  ONNX Runtime's native type on x86), ``int8`` symmetric (zero point 0, what TensorRT
  accepts). Its range comes from a calibration pass (min/max over real frames), then is
  either learned (LSQ gradient through a log-scale parameter, see below) or frozen.
- ``quantize_bias``: int32 bias on the grid ``s_input * s_weight_c``, what ONNX Runtime's
  QLinearConv/QGemm add in the int32 accumulator.

All three use PyTorch's own fake-quant kernels (``torch.fake_quantize_per_tensor_affine``,
``torch.fake_quantize_per_channel_affine``, ``torch._fake_quantize_learnable_per_tensor_affine``),
which the TorchScript ONNX exporter turns into QuantizeLinear/DequantizeLinear pairs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

ActivationType = Literal["uint8", "int8"]
INT32_MAX = 2**31 - 1
_EPS = 1e-8  # smallest scale: a constant-zero tensor still gets a valid (positive) scale


def activation_qrange(kind: ActivationType) -> tuple[int, int]:
    """(quant_min, quant_max) of an activation type; the only pairs the ONNX exporter accepts."""
    return (0, 255) if kind == "uint8" else (-128, 127)


def activation_qparams(lo: float, hi: float, kind: ActivationType) -> tuple[float, int]:
    """(scale, zero point) covering [lo, hi] (widened to include 0, so zero is exact).

    uint8: ``scale = (hi - lo) / 255``, ``zp = round(-lo / scale)``; int8: symmetric,
    ``scale = max(|lo|, |hi|) / 127``, ``zp = 0``.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if kind == "int8":
        return max(max(-lo, hi) / 127.0, _EPS), 0
    scale = max((hi - lo) / 255.0, _EPS)
    return scale, int(min(255, max(0, round(-lo / scale))))


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantization of an activation, [N, ...] -> [N, ...] on the int grid.

    States: ``calibrating`` (identity; records the min and max it sees), then quantizing
    with the calibrated range. With ``learn=True`` the scale trains: it is parametrised as
    ``scale0 * exp(lr_scale * log_gain)`` so an Adam step of size ``lr`` moves it by about
    ``lr_scale * lr`` of itself, whatever its magnitude (at QAT's small LR a range would
    otherwise barely move); the zero point stays at its calibrated value. ``freeze()``
    stops learning.
    """

    def __init__(self, kind: ActivationType = "uint8", learn: bool = True, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.kind: ActivationType = kind
        self.lr_scale = float(lr_scale)
        self.qmin, self.qmax = activation_qrange(kind)
        self.calibrating = False
        self.register_buffer("observed", torch.tensor([math.inf, -math.inf]))  # running [min, max]
        self.register_buffer("scale0", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1))
        self.log_gain = nn.Parameter(torch.zeros(1), requires_grad=learn)
        self._export_scale: torch.Tensor | None = None  # set by export_form: a plain constant

    @property
    def is_calibrated(self) -> bool:
        return bool(torch.isfinite(self.observed).all())

    def scale(self) -> torch.Tensor:
        """Current scale, shape [1] (differentiable when learning)."""
        return self.scale0 * torch.exp(self.lr_scale * self.log_gain)

    def finish_calibration(self) -> None:
        """Set scale and zero point from the observed range; the quantizer then quantizes."""
        if not self.is_calibrated:
            raise RuntimeError("activation quantizer saw no data during calibration")
        scale, zp = activation_qparams(float(self.observed[0]), float(self.observed[1]), self.kind)
        self.scale0.fill_(scale)
        self.zero_point.fill_(float(zp))
        with torch.no_grad():
            self.log_gain.zero_()
        self.calibrating = False

    def freeze(self) -> None:
        self.log_gain.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            with torch.no_grad():
                lo, hi = x.detach().float().aminmax()
                self.observed[0] = torch.minimum(self.observed[0], lo)
                self.observed[1] = torch.maximum(self.observed[1], hi)
            return x
        if self._export_scale is not None:
            # A Python int zero point and a constant scale: the exporter writes plain initializers.
            return torch.fake_quantize_per_tensor_affine(
                x, float(self._export_scale), int(self.zero_point.item()), self.qmin, self.qmax
            )
        if self.training and self.log_gain.requires_grad:
            # LSQ's gradient scale 1/sqrt(numel * qmax) keeps the scale's step size in line with the weights'.
            grad_factor = 1.0 / math.sqrt(x.numel() * self.qmax)
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.scale(), self.zero_point, self.qmin, self.qmax, grad_factor
            )
        return torch.fake_quantize_per_tensor_affine(
            x, self.scale().detach(), self.zero_point.to(torch.int32), self.qmin, self.qmax
        )

    def extra_repr(self) -> str:
        return f"kind={self.kind}, learn={self.log_gain.requires_grad}, lr_scale={self.lr_scale:g}"


class WeightQuantizer(nn.Module):
    """Per-output-channel (axis 0) symmetric fake quantization of a Conv/Linear weight.

    ``bits=8``: values on ``[-127, 127] * scale_c``; ``bits=7``: ``[-63, 63] * scale_c``
    (ONNX Runtime's ``reduce_range``: no int16 overflow in the u8*s8 kernels of AVX2 CPUs).
    """

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        if bits not in (7, 8):
            raise ValueError(f"weight bits must be 7 or 8, got {bits}")
        self.bits = bits
        self.qmax = 2 ** (bits - 1) - 1
        self._export_scale: torch.Tensor | None = None

    def scale(self, weight: torch.Tensor) -> torch.Tensor:
        """[C_out] scales; not a trained quantity, so detached (torch's kernel wants no grad here)."""
        if self._export_scale is not None:
            return self._export_scale
        amax = weight.detach().abs().flatten(1).amax(dim=1)
        return (amax / self.qmax).clamp_min(_EPS)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = self.scale(weight)
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
        # Range -128..127 in the op (the exporter accepts no other int8 pair); |w| / scale <= qmax
        # keeps the values on the symmetric [-qmax, qmax] grid.
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -128, 127)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel=True, symmetric=True"


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (half to even, as QuantizeLinear) with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def quantize_bias(bias: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """``bias`` [C] on the int32 grid ``input_scale * weight_scale`` [C], straight-through gradient."""
    grid = (input_scale.detach() * weight_scale.detach()).clamp_min(_EPS)
    return torch.clamp(round_ste(bias / grid), -INT32_MAX, INT32_MAX) * grid
