"""Turn a trained FP32 student into a fake-quant student, calibrate it, freeze it for export.

BatchNorm: folded before fine-tuning. ``torch.fx`` traces the student and every
Conv -> BatchNorm pair (and Linear -> BatchNorm1d) becomes one conv with the BN's
running statistics and affine terms in its weight and bias (``fuse`` of
``torch.fx.experimental.optimization``, eval-mode statistics). QAT then trains the
folded weights: what the weight quantizer sees is exactly what the runtime executes, and
no batch statistics move during fine-tuning. A student fx cannot trace keeps its BN
layers, frozen: always in eval mode (running statistics), their scale and shift not
trained; the exporter then leaves BatchNormalization nodes that the coverage check reports.

Cross-layer equalization (``cfg.equalize``, see ``equalize``) then balances the per-channel
ranges of the folded network, before the quantizers are inserted and calibrated.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from edgekd.qat.config import QatConfig, QatError
from edgekd.qat.equalize import EqualizedPair, equalize_cross_layer
from edgekd.qat.fake_quant import ActivationQuantizer
from edgekd.qat.modules import CONV_TYPES, POOL_TYPES, QuantConv, QuantLinear, QuantPool, _QuantWeighted

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class QatModel(nn.Module):
    """A student with fake quantizers: [N, *frame] -> logits [N, K], like the FP32 student.

    ``train()`` keeps any unfolded BatchNorm in eval mode (see the module docstring).
    """

    def __init__(self, net: nn.Module, bn_folded: bool, equalized: list[EqualizedPair] | None = None) -> None:
        super().__init__()
        self.net = net
        self.bn_folded = bn_folded
        self.equalized = equalized or []  # the layer pairs cross-layer equalization rescaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> QatModel:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, _BN_TYPES):
                module.eval()  # safe: nn.Module.eval(), frozen BatchNorm statistics
        return self

    def activation_quantizers(self) -> list[ActivationQuantizer]:
        return [m for m in self.modules() if isinstance(m, ActivationQuantizer)]

    def quantized_layers(self) -> list[_QuantWeighted]:
        return [m for m in self.modules() if isinstance(m, _QuantWeighted)]

    def freeze_ranges(self) -> None:
        for quantizer in self.activation_quantizers():
            quantizer.freeze()


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, bool]:
    """(copy of ``model`` in eval mode with Conv/Linear->BN pairs folded, whether fx could fold)."""
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()  # safe: nn.Module.eval(), folding uses running statistics
    try:
        return fuse(model), True
    except Exception:  # fx raises many types on untraceable Python control flow
        return model, False


def _wrap(module: nn.Module, cfg: QatConfig) -> nn.Module | None:
    def quantizer() -> ActivationQuantizer:
        return ActivationQuantizer(cfg.activations, cfg.ranges == "learned", cfg.range_lr_scale)

    bits, int32_bias = cfg.resolved_weight_bits(), cfg.bias == "int32"
    if isinstance(module, CONV_TYPES):
        return QuantConv(module, quantizer(), bits, int32_bias)
    if isinstance(module, nn.Linear):
        return QuantLinear(module, quantizer(), bits, int32_bias)
    if isinstance(module, POOL_TYPES):
        return QuantPool(module, quantizer())
    return None


def _insert_quantizers(module: nn.Module, cfg: QatConfig) -> int:
    count = 0
    for name, child in list(module.named_children()):
        wrapped = _wrap(child, cfg)
        if wrapped is not None:
            setattr(module, name, wrapped)
            count += 1
        else:
            count += _insert_quantizers(child, cfg)
    return count


def prepare_qat(student: nn.Module, cfg: QatConfig, frames: np.ndarray | None = None) -> QatModel:
    """A fake-quant copy of ``student`` (on CPU; ``student`` is left untouched), not yet calibrated.

    Every Conv1d/2d/3d and Linear gets an input quantizer, a per-channel weight quantizer
    and (``cfg.bias == "int32"``) an int32 bias grid; every pooling layer an input quantizer.
    With ``cfg.equalize`` (and BatchNorm folded), cross-layer equalization runs first, on the
    activation ranges of ``frames`` (float32 [N, *frame], the calibration frames) or, when
    None, data-free on the weight ranges.
    """
    student = copy.deepcopy(student).cpu()
    net, folded = fold_batchnorm(student) if cfg.fold_batchnorm else (student, False)
    equalized = equalize_cross_layer(net, frames) if cfg.equalize and folded else []
    if _insert_quantizers(net, cfg) == 0:
        raise QatError(
            f"{type(student).__name__} has no Conv or Linear layer to quantize",
            hint="quantization-aware training needs a network built from nn.Conv*/nn.Linear modules",
        )
    return QatModel(net, folded, equalized)


def equalized_float(student: nn.Module, frames: np.ndarray | None = None) -> nn.Module:
    """A float copy of ``student`` with BatchNorm folded and cross-layer equalization applied
    (what ``prepare_qat`` quantizes), e.g. for a post-training quantization baseline."""
    net, folded = fold_batchnorm(copy.deepcopy(student).cpu())
    if folded:
        equalize_cross_layer(net, frames)
    return net


@torch.no_grad()
def calibrate(model: QatModel, frames: np.ndarray, batch_size: int = 64) -> None:
    """Set every activation range from min/max over ``frames`` float32 [N, *frame] run in float."""
    quantizers = model.activation_quantizers()
    for quantizer in quantizers:
        quantizer.calibrating = True
        quantizer.observed.copy_(torch.tensor([np.inf, -np.inf]))
    was = model.training
    model.eval()  # safe: nn.Module.eval(), inference mode
    device = next(model.parameters()).device
    try:
        for start in range(0, len(frames), batch_size):
            model(torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).to(device))
    finally:
        model.train(was)
    for quantizer in quantizers:
        quantizer.finish_calibration()


@contextlib.contextmanager
def export_form(model: QatModel) -> Iterator[QatModel]:
    """``model`` with every scale and int32 bias held as plain constant tensors (eval mode).

    The TorchScript tracer then writes them as initializers: QuantizeLinear/DequantizeLinear
    with constant scales instead of the ops that compute them from the weights. The weights
    are on their grid inside the block; the float weights come back when it ends.
    """
    was = model.training
    model.eval()  # safe: nn.Module.eval(), inference mode
    float_weights = [layer.layer.weight.detach().clone() for layer in model.quantized_layers()]
    try:
        with torch.no_grad():
            for quantizer in model.activation_quantizers():
                quantizer._export_scale = quantizer.scale().detach().clone()
            for layer in model.quantized_layers():
                layer.weight_quant._export_scale = layer.weight_quant.scale(layer.layer.weight).clone()
                weight, bias = layer.quantized_params()
                # The weight parameter itself goes onto its grid, so the exporter's QuantizeLinear of
                # it lands on exact integers: no rounding tie can differ between torch and ONNX.
                layer.layer.weight.copy_(weight)
                layer._export_bias = None if bias is None else bias.detach().clone()
        yield model
    finally:
        for quantizer in model.activation_quantizers():
            quantizer._export_scale = None
        with torch.no_grad():
            for layer, weight in zip(model.quantized_layers(), float_weights, strict=True):
                layer.layer.weight.copy_(weight)
                layer.weight_quant._export_scale = None
                layer._export_bias = None
        model.train(was)
