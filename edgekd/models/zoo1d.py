"""Built-in 1-D networks for IQ frames: one teacher and two students.

Every model maps float32 ``[N, in_channels, L]`` (for IQ: ``in_channels=2``, I and Q)
to class logits ``[N, num_classes]`` and works for any ``L >= 16``. The forward passes
hold no data-dependent Python control flow and end in a global average pool, so they
export to ONNX with a dynamic batch and length.

Parameter counts at the defaults for 2x128 frames and 8 classes (see tests):
``resnet1d`` 242k params / 5.2M MACs per frame (teacher); ``cnn1d_small`` 6.3k / 0.29M
and ``mobilenet1d`` 21k / 0.39M (students).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.registry import MODELS


def _require_positive(model: str, *, integer: bool = True, **values: object) -> None:
    """Reject zero, negative, boolean or (when ``integer``) fractional settings with one line."""
    allowed = (int,) if integer else (int, float)
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, allowed) or value <= 0:
            kind = "a positive integer" if integer else "a positive number"
            raise ConfigError(f"model {model!r}: {name} must be {kind}, got {value!r}")


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    # No conv bias: the BatchNorm shift that follows makes it redundant.
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class _Head(nn.Sequential):
    """Global average pool over time, then a linear classifier: [N, C, L] -> [N, K]."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"model head: dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = [nn.AdaptiveAvgPool1d(1), nn.Flatten(1)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(channels, num_classes))
        super().__init__(*layers)


class BasicBlock1d(nn.Module):
    """Two 3-tap conv-BN layers with an identity (or 1x1 projection) shortcut.

    [N, c_in, L] -> [N, c_out, ceil(L / stride)].
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


@MODELS.register("resnet1d")
class ResNet1d(nn.Module):
    """Residual 1-D CNN (teacher).

    Stem conv (7 taps, full length) -> stages of BasicBlock1d, each halving the length
    and widening the channels -> global average pool -> linear head. [N, C, L] -> [N, K].

    Args:
        num_classes: number of output logits K.
        in_channels: input channels C (2 for IQ).
        width: channels of the first stage; stage i has ``width * multipliers[i]``.
        blocks: BasicBlocks per stage (3 or 4 stages are typical).
        multipliers: width multiplier per stage (same length as ``blocks``).
        dropout: dropout before the linear head (0 disables it).
        strides: length stride of each stage's first block (same length as ``blocks``;
            default 2 everywhere). A 1 in the first stage keeps every sample there.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2,
        width: int = 32,
        blocks: Sequence[int] = (2, 2, 2),
        multipliers: Sequence[int] = (1, 2, 4),
        dropout: float = 0.0,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        _require_positive("resnet1d", num_classes=num_classes, in_channels=in_channels, width=width)
        if len(blocks) != len(multipliers) or not blocks:
            raise ConfigError(
                f"model 'resnet1d': blocks {list(blocks)} and multipliers {list(multipliers)} "
                "must be non-empty lists of the same length"
            )
        strides = [2] * len(blocks) if strides is None else list(strides)
        if len(strides) != len(blocks):
            raise ConfigError(
                f"model 'resnet1d': strides {strides} must have one entry per stage of blocks {list(blocks)}"
            )
        self.stem = _conv_bn_relu(in_channels, width, 7)
        stages: list[nn.Module] = []
        c_in = width
        for count, mult, stride in zip(blocks, multipliers, strides, strict=True):
            _require_positive("resnet1d", blocks=count, multipliers=mult, strides=stride)
            c_out = width * mult
            # By default every stage halves the length: the wide late stages then run on L/8
            # samples, which keeps a teacher epoch on 12k 2x128 frames at seconds on 2 CPU cores.
            layers = [BasicBlock1d(c_in, c_out, stride=stride)]
            layers += [BasicBlock1d(c_out, c_out) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = _Head(c_in, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, L] float -> [N, K] logits."""
        return self.head(self.stages(self.stem(x)))


@MODELS.register("cnn1d_small")
class CNN1dSmall(nn.Module):
    """Small plain CNN (student): three conv-BN-ReLU layers, global average pool, linear.

    The second and third convs have stride 2 (L -> L/2 -> L/4): cheaper than computing
    at full length and max-pooling, and unlike ``nn.MaxPool1d`` it keeps the length
    dynamic under ``torch.export``/ONNX export (max-pool specialises it to a constant).

    Args:
        num_classes: number of output logits K.
        in_channels: input channels C.
        width: channels of the first conv; later convs use ``2 * width``.
        kernel_size: taps of the first conv (later convs use 5 and 3).
    """

    def __init__(self, num_classes: int, in_channels: int = 2, width: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        _require_positive("cnn1d_small", num_classes=num_classes, in_channels=in_channels, width=width)
        _require_positive("cnn1d_small", kernel_size=kernel_size)
        wide = 2 * width
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width, kernel_size),
            _conv_bn_relu(width, wide, 5, stride=2),
            _conv_bn_relu(wide, wide, 3, stride=2),
        )
        self.head = _Head(wide, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, L] float -> [N, K] logits."""
        return self.head(self.features(x))


def _round_channels(value: float, divisor: int = 8) -> int:
    # Multiples of 8 map well onto SIMD lanes and INT8 kernels on edge runtimes.
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class DepthwiseSeparable1d(nn.Module):
    """Depthwise conv (``kernel`` taps, per channel) then a 1x1 pointwise conv, each BN+ReLU.

    [N, c_in, L] -> [N, c_out, ceil(L / stride)].
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 5) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(c_in, c_in, kernel, stride=stride, groups=c_in)
        self.pointwise = _conv_bn_relu(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# Output channels at width_mult=1 of the first block, then of each later stage; every later
# stage opens with a stride-2 block followed by ``depth`` stride-1 blocks.
_MOBILENET1D_FIRST = 24
_MOBILENET1D_STAGES: tuple[int, ...] = (48, 96)


def _mobilenet1d_blocks(depth: int) -> list[tuple[int, int]]:
    """(output channels at width_mult=1, stride) per depthwise-separable block."""
    blocks = [(_MOBILENET1D_FIRST, 1)]
    for channels in _MOBILENET1D_STAGES:
        blocks += [(channels, 2)] + [(channels, 1)] * depth
    return blocks


@MODELS.register("mobilenet1d")
class MobileNet1d(nn.Module):
    """1-D MobileNet (student): strided stem conv + depthwise-separable blocks, GAP, linear.

    Args:
        num_classes: number of output logits K.
        in_channels: input channels C.
        width_mult: scales every layer's channels (rounded to multiples of 8).
        kernel_size: taps of the depthwise convs.
        dropout: dropout before the linear head.
        stem_kernel: taps of the stem conv.
        stem_stride: stride of the stem conv; 1 keeps the full input length for the first
            block: twice the MACs, the same parameters. On 8-samples-per-symbol IQ frames
            (the synthetic modulation set) it was worth 3.3 points at SNR >= 0 dB
            (docs/benchmarks.md); the default 2 keeps older checkpoints' behaviour.
        depth: stride-1 blocks after the stride-2 block that opens each later stage (0 or
            more). The default 1 is the original five-block network, with the same module
            names, so older checkpoints load; ``edgekd search`` varies it.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2,
        width_mult: float = 1.0,
        kernel_size: int = 5,
        dropout: float = 0.0,
        stem_kernel: int = 3,
        stem_stride: int = 2,
        depth: int = 1,
    ) -> None:
        super().__init__()
        _require_positive("mobilenet1d", num_classes=num_classes, in_channels=in_channels)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"model 'mobilenet1d': depth must be an integer >= 0, got {depth!r}")
        _require_positive(
            "mobilenet1d", kernel_size=kernel_size, stem_kernel=stem_kernel, stem_stride=stem_stride
        )
        _require_positive("mobilenet1d", integer=False, width_mult=width_mult)
        c_in = _round_channels(16 * width_mult)
        # The default stride-2 stem halves the length before the blocks; L >= 16 still leaves >= 2.
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, c_in, stem_kernel, stride=stem_stride)]
        for channels, stride in _mobilenet1d_blocks(depth):
            c_out = _round_channels(channels * width_mult)
            layers.append(DepthwiseSeparable1d(c_in, c_out, stride, kernel_size))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = _Head(c_in, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, L] float -> [N, K] logits."""
        return self.head(self.features(x))
