"""Quantized stand-ins for Conv/Linear/pooling layers: quantize the input, the weight and
the bias the way the runtime will, then run the float op on the dequantized values.

Each wrapper owns the quantizer of its input tensor, so every Conv/Gemm/pool of the
exported graph is preceded by a QuantizeLinear/DequantizeLinear pair; a ReLU between a
conv and the next quantizer is what ONNX Runtime fuses into QLinearConv (its ReLU+Q fusion).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgekd.qat.fake_quant import ActivationQuantizer, WeightQuantizer, quantize_bias

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL_TYPES = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
)


class _QuantWeighted(nn.Module):
    """Shared parts of QuantConv and QuantLinear: input, weight and (optional) bias quantizers."""

    def __init__(
        self,
        layer: nn.Module,
        input_quant: ActivationQuantizer,
        weight_bits: int,
        int32_bias: bool,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.input_quant = input_quant
        self.weight_quant = WeightQuantizer(weight_bits)
        self.int32_bias = int32_bias
        self._export_bias: torch.Tensor | None = None

    def quantized_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(fake-quantized weight, bias on its int32 grid or float) as the runtime sees them."""
        weight = self.weight_quant(self.layer.weight)
        bias = self.layer.bias
        if self._export_bias is not None:
            bias = self._export_bias
        elif bias is not None and self.int32_bias and not self.input_quant.calibrating:
            w_scale = self.weight_quant.scale(self.layer.weight)
            bias = quantize_bias(bias, self.input_quant.scale(), w_scale)
        return weight, bias


class QuantConv(_QuantWeighted):
    """Conv1d/2d/3d with quantized input, per-channel int8 weight and int32 (or float) bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        if self.input_quant.calibrating:  # the calibration pass runs the float network
            return self.layer(x)
        weight, bias = self.quantized_params()
        return self.layer._conv_forward(x, weight, bias)


class QuantLinear(_QuantWeighted):
    """Linear with quantized input, per-channel int8 weight and int32 (or float) bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        if self.input_quant.calibrating:
            return self.layer(x)
        weight, bias = self.quantized_params()
        return F.linear(x, weight, bias)


class QuantPool(nn.Module):
    """A pooling layer whose input is quantized: the conv before it then ends in a Q node."""

    def __init__(self, layer: nn.Module, input_quant: ActivationQuantizer) -> None:
        super().__init__()
        self.layer = layer
        self.input_quant = input_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.input_quant(x))
