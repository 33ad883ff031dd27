"""A BatchNorm-free 1-D CNN for recipe tests (``module:tests.distill.plain_nets:conv_net``).

Without BatchNorm a two-rank DDP step equals the one-process step up to float summation
order, so a torchrun run can be compared with a single process weight by weight.
"""

from __future__ import annotations

from torch import nn


def conv_net(num_classes: int, in_channels: int = 2, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(in_channels, width, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(width, width, 5, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(1),
        nn.Linear(width, num_classes),
    )
