"""A user-style model factory, imported by tests through ``module:tests.models.tiny_factory:build``."""

from __future__ import annotations

from torch import nn


def build(num_classes: int, in_channels: int = 2, hidden: int = 4) -> nn.Module:
    """[N, in_channels, L] -> [N, num_classes] through one 1x1 conv and a mean over time."""
    return nn.Sequential(
        nn.Conv1d(in_channels, hidden, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(1),
        nn.Linear(hidden, num_classes),
    )


def not_a_model(num_classes: int, in_channels: int = 2) -> str:
    return "surprise"


NOT_CALLABLE = 3
