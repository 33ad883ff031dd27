"""A convolution + attention 1-D teacher for IQ frames, in the spirit of ClST.

Convolutions are good at the local shape of a waveform (pulse shape, symbol transitions);
self-attention relates samples far apart in the frame (phase trajectories, symbol
statistics). The network does both in sequence:

1. conv stem: three conv-BN-ReLU layers, the first two with stride 2, [N, C, L] -> [N, D, L/4]
   (fewer tokens make attention 16x cheaper than on raw samples);
2. a depthwise convolution added to the tokens as position information (no learned position
   table, so any frame length works and export keeps the length dynamic);
3. ``depth`` pre-norm transformer encoder layers over the L/4 tokens;
4. LayerNorm, mean over time, linear head: [N, K].

Attention is written out (one fused QKV projection, softmax(QKᵀ/√d)V) rather than taken from
``nn.MultiheadAttention``, whose fast path has data-dependent branches: the plain form exports to
ONNX at opset 17 and through ``torch.export`` with a dynamic batch and length.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.registry import MODELS
from edgekd.models.zoo1d import _conv_bn_relu, _require_positive


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens [N, T, D] -> [N, T, D]."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # unflatten/flatten instead of reshape(n, t, ...): naming T in a reshape makes torch.export
        # guard T != 1 and lose the dynamic length.
        d = x.shape[-1]
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, d // self.heads)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [N, H, T, d/H]
        attn = self.drop(torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).flatten(2)
        return self.proj(out)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + Attn(LN(x)), then x + MLP(LN(x)). [N, T, D] -> [N, T, D]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@MODELS.register("clst1d")
class ConvAttention1d(nn.Module):
    """Conv stem + transformer encoder teacher (``clst1d``): [N, C, L] -> [N, K], any L >= 16.

    Args:
        num_classes: number of output logits K.
        in_channels: input channels C (2 for IQ).
        dim: token width D (divisible by ``heads``).
        depth: transformer encoder layers.
        heads: attention heads.
        mlp_ratio: hidden width of each layer's MLP, in multiples of D.
        dropout: dropout in attention, MLPs and before the head.

    Module paths for feature taps: ``stem``, ``pos``, ``blocks.0`` .. ``blocks.{depth-1}``,
    ``norm`` (tokens [N, T, D]) and ``head``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2,
        dim: int = 96,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _require_positive("clst1d", num_classes=num_classes, in_channels=in_channels, dim=dim)
        _require_positive("clst1d", depth=depth, heads=heads)
        _require_positive("clst1d", integer=False, mlp_ratio=mlp_ratio)
        if dim % heads:
            raise ConfigError(f"model 'clst1d': dim {dim} is not divisible by heads {heads}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"model 'clst1d': dropout must be in [0, 1), got {dropout!r}")
        self.stem = nn.Sequential(
            _conv_bn_relu(in_channels, dim // 2, 7, stride=2),
            _conv_bn_relu(dim // 2, dim, 5, stride=2),
            _conv_bn_relu(dim, dim, 3),
        )
        self.pos = nn.Conv1d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.Sequential(*[EncoderLayer(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, L] float -> [N, K] logits."""
        tokens = self.stem(x)  # [N, D, T]
        # contiguous: adding a transposed view to a dense tensor makes torch.export guard T != 1.
        tokens = (tokens + self.pos(tokens)).transpose(1, 2).contiguous()  # [N, T, D]
        tokens = self.norm(self.blocks(tokens))
        return self.head(self.drop(tokens.mean(dim=1)))
