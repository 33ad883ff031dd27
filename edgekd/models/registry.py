"""The catalogue of built-in networks: ``MODELS``, filled by the modules that define them.

A leaf (as ``timm/models/_registry.py`` is timm's): each zoo module registers its classes here
when it is imported (``@MODELS.register("resnet1d")``), and the factory looks names up here, so
neither the zoo nor the factory imports the other's users.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgekd.registry import Registry

# factory(num_classes, in_channels, **kwargs) -> a network mapping [N, in_channels, ...] -> [N, num_classes]
ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")

__all__ = ["MODELS", "ModelFactory"]
