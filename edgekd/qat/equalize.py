"""Cross-layer equalization (CLE): balance per-channel ranges before per-tensor quantization.

Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction",
section 4.1. For a pair ``L1 -> ops -> L2`` of Conv/Linear layers whose ops in between are
positively homogeneous per channel (ReLU, LeakyReLU, average/max pooling, flatten, dropout:
``f(x / s) = f(x) / s`` for ``s > 0``), dividing output channel ``i`` of ``L1`` (its weight
row and bias) by ``s_i`` and multiplying input channel ``i`` of ``L2`` by ``s_i`` leaves the
network's function unchanged up to float rounding. One per-tensor INT8 activation scale
then no longer has to cover a channel whose range is many times the others' (an "outlier
channel" leaves the rest only a few levels), and ``L2``'s input columns carry the
difference, which its per-channel weight quantizer can absorb.

Scales: ``s_i = sqrt(r1_i / r2_i)`` with ``r2_i`` the largest ``|w|`` of ``L2``'s input
channel ``i`` and ``r1_i`` the largest ``|activation|`` of channel ``i`` between the two
layers on calibration frames (the data-free variant of the paper uses ``L1``'s weight row
range instead). Afterwards both are ``sqrt(r1_i * r2_i)``: Nagel's balance point. The scales
are normalised to a geometric mean of 1, so the activations keep their overall magnitude.

Works on a ``torch.fx.GraphModule`` (what BatchNorm folding in ``prepare`` returns): a BN
left between the layers, a residual branch or any other op ends a pair, and that pair is
left alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

from edgekd.qat.modules import CONV_TYPES, POOL_TYPES

# Average and max pooling are positively homogeneous per channel, as are these.
_HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU, *POOL_TYPES, nn.Flatten, nn.Dropout, nn.Identity)
_HOMOGENEOUS_FUNCTIONS = (F.relu, torch.relu, F.leaky_relu, torch.flatten, F.dropout)
_TINY = 1e-8  # a dead channel (range ~0) keeps scale 1: there is nothing to balance


@dataclasses.dataclass
class LayerPair:
    """``producer`` -> homogeneous ops (``between``, fx nodes) -> ``consumer``: module names."""

    producer: str
    consumer: str
    between: list[fx.Node]


@dataclasses.dataclass
class EqualizedPair:
    """What CLE did to one pair: channel range spread (largest / median) before and after."""

    producer: str
    consumer: str
    spread_before: float
    spread_after: float
    largest_scale: float


def _weighted(module: nn.Module) -> bool:
    return isinstance(module, (*CONV_TYPES, nn.Linear))


def _homogeneous(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _HOMOGENEOUS_MODULES)
    return node.op == "call_function" and node.target in _HOMOGENEOUS_FUNCTIONS


def find_pairs(gm: fx.GraphModule) -> list[LayerPair]:
    """Every Conv/Linear -> homogeneous ops -> Conv/Linear chain without branches, in graph order.

    The consumer must be a dense layer (a grouped or depthwise conv mixes no channels, so
    its input channels cannot take the producer's scales); each module is called once.
    """
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not _weighted(modules[str(node.target)]):
            continue
        between, current = [], node
        while len(current.users) == 1:
            (nxt,) = current.users
            if nxt.op == "call_module" and _weighted(modules[str(nxt.target)]):
                consumer, width = modules[str(nxt.target)], modules[str(node.target)].weight.shape[0]
                if isinstance(consumer, nn.Linear):  # after a flatten: whole blocks of features per channel
                    dense = consumer.in_features % width == 0
                else:
                    dense = consumer.groups == 1 and consumer.in_channels == width
                once = calls[str(node.target)] == 1 and calls[str(nxt.target)] == 1
                if dense and once and nxt.args[0] is current:
                    pairs.append(LayerPair(str(node.target), str(nxt.target), between))
                break
            if not _homogeneous(nxt, modules) or nxt.args[0] is not current:
                break
            between.append(nxt)
            current = nxt
    return pairs


def _channel_amax(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Largest |value| per channel of [N, C, ...] or flattened [N, C * k] -> [C]."""
    t = t.detach().abs().reshape(t.shape[0], channels, -1)
    return t.amax(dim=(0, 2))


class _RangeRecorder(fx.Interpreter):
    """Runs the graph and keeps the per-channel largest |value| of the watched nodes."""

    def __init__(self, gm: fx.GraphModule, watch: dict[fx.Node, int]) -> None:
        super().__init__(gm)
        self.watch = watch
        self.amax: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n in self.watch:
            seen = _channel_amax(out, self.watch[n])
            self.amax[n] = torch.maximum(self.amax[n], seen) if n in self.amax else seen
        return out


def _activation_ranges(
    gm: fx.GraphModule, pairs: list[LayerPair], frames: np.ndarray, batch_size: int
) -> list[torch.Tensor]:
    """[C] per pair: the largest |activation| of each channel over every tensor between the layers."""
    modules = dict(gm.named_modules())
    nodes = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
    watch: dict[fx.Node, int] = {}
    for pair in pairs:
        channels = modules[pair.producer].weight.shape[0]
        for node in pair.between or [nodes[pair.producer]]:
            watch[node] = channels
    recorder = _RangeRecorder(gm, watch)
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            recorder.run(torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])))
    ranges = []
    for pair in pairs:
        seen = [recorder.amax[n] for n in pair.between or [nodes[pair.producer]]]
        ranges.append(torch.stack(seen).amax(dim=0))
    return ranges


def _input_column_amax(consumer: nn.Module, channels: int) -> torch.Tensor:
    """[C] largest |w| over the consumer's weights that read input channel c."""
    w = consumer.weight.detach().abs()
    w = w.reshape(w.shape[0], channels, -1)  # conv [O, C, k...]; linear [O, C * k] after flatten
    return w.amax(dim=(0, 2))


def _spread(ranges: torch.Tensor) -> float:
    alive = ranges[ranges > _TINY]
    return float(alive.max() / alive.median()) if len(alive) else 1.0


@torch.no_grad()
def equalize_cross_layer(
    gm: fx.GraphModule, frames: np.ndarray | None = None, batch_size: int = 64
) -> list[EqualizedPair]:
    """Rescale every layer pair of ``gm`` (in place) as described in the module docstring.

    Args:
        gm: a traced float network in eval mode (BatchNorm folded: a BN between layers ends a pair).
        frames: float32 [N, *frame] calibration frames for the activation ranges; None:
            data-free, the producer's per-output-channel weight range stands in.
        batch_size: frames per forward pass while measuring.

    Returns:
        One ``EqualizedPair`` per pair, in graph order: the spread (largest / median channel
        range) of the activations between the layers before and after.
    """
    pairs = find_pairs(gm)
    if not pairs:
        return []
    modules = dict(gm.named_modules())
    if frames is not None:
        act_ranges = _activation_ranges(gm, pairs, frames, batch_size)
    else:
        act_ranges = [modules[p.producer].weight.detach().abs().flatten(1).amax(dim=1) for p in pairs]
    done = []
    # Reverse order: equalizing (L2, L3) rescales L2's rows, which changes the column ranges
    # (L1, L2) balances against; the activations between L1 and L2 do not move. So one
    # backward pass reaches the balance point that the paper's forward iteration converges to.
    for pair, r1 in reversed(list(zip(pairs, act_ranges, strict=True))):
        producer, consumer = modules[pair.producer], modules[pair.consumer]
        channels = producer.weight.shape[0]
        r2 = _input_column_amax(consumer, channels)
        alive = (r1 > _TINY) & (r2 > _TINY)
        scale = torch.ones(channels, dtype=torch.float64)
        scale[alive] = torch.sqrt(r1[alive].double() / r2[alive].double())
        if alive.any():
            scale[alive] /= torch.exp(torch.log(scale[alive]).mean())  # geometric mean 1
        _rescale(producer, consumer, scale)
        done.append(
            EqualizedPair(
                pair.producer, pair.consumer, _spread(r1), _spread(r1 / scale.float()), float(scale.max())
            )
        )
    return done[::-1]


def _rescale(producer: nn.Module, consumer: nn.Module, scale: torch.Tensor) -> None:
    """Producer output channel c divided by scale[c]; consumer input channel c multiplied by it."""
    channels = len(scale)
    shape_out = [-1] + [1] * (producer.weight.dim() - 1)
    producer.weight.div_(scale.to(producer.weight.dtype).reshape(shape_out))
    if producer.bias is not None:
        producer.bias.div_(scale.to(producer.bias.dtype))
    w = consumer.weight
    per_column = w.shape[1] // channels  # 1 for a conv; the flattened positions per channel for Linear
    col = scale.to(w.dtype).repeat_interleave(per_column)
    w.mul_(col.reshape([1, -1] + [1] * (w.dim() - 2)))


def describe(pairs: list[EqualizedPair]) -> str:
    """One line: how much CLE narrowed the channel spread of each pair (x largest/median)."""
    if not pairs:
        return "cross-layer equalization: no Conv/Linear pair to balance"
    parts = [f"{p.producer}->{p.consumer} x{p.spread_before:.1f}->x{p.spread_after:.1f}" for p in pairs]
    worst = max((p.largest_scale for p in pairs), default=math.nan)
    return f"cross-layer equalization (channel range spread): {', '.join(parts)}; largest scale {worst:.3g}"
