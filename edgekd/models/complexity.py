"""Model size and compute: parameter count and multiply-accumulates (MACs) per sample.

``count_macs`` runs one forward pass on a zero input of batch 1 and adds, through
forward hooks, the MACs of every convolution (``nn.Conv1d/2d/3d``, grouped and
depthwise included) and ``nn.Linear``:

* convolution: ``output elements * (in_channels / groups) * prod(kernel_size)``
* linear: ``output elements * in_features``

Not counted, because they are small next to the layers above or are not MACs: bias
additions, BatchNorm (folded into the conv on export), activations, pooling, residual
additions, softmax, and any matmul done through functional calls (e.g. the attention
products inside ``nn.MultiheadAttention``). One MAC is one multiply plus one add;
FLOPs ~ 2 x MACs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgekd.errors import ShapeError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def _linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one sample.

    Args:
        model: any network; it runs in eval mode (its mode is restored afterwards).
        input_shape: one sample's shape *without* the batch axis, e.g. ``(2, 128)``
            for an IQ frame or ``(3, 224, 224)`` for an image.

    Returns:
        MACs for batch size 1 (conv + linear layers only; see the module docstring).

    Raises:
        ShapeError: the model cannot take an input of that shape.
    """
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, _CONVS):
            total += _conv_macs(module, output)
        else:
            total += _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (*_CONVS, nn.Linear))]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    # train-mode BatchNorm would update its running statistics
    model.eval()  # safe: nn.Module.eval(), inference mode
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    except RuntimeError as exc:
        raise ShapeError(
            f"model cannot take an input of shape {tuple(input_shape)} (batch axis excluded): "
            f"{str(exc).splitlines()[0]}",
            hint="pass one sample's shape, e.g. (2, 128) for 2x128 IQ frames",
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)
