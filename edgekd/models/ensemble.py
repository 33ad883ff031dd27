"""Teacher ensembles: several trained networks that teach as one (the mean of their logits).

Hinton et al. (2015) distilled an ensemble into a single small network: independently trained
members make different mistakes, so their average is more accurate than any of them. Whether
a student gains from that depends on the student: on the synthetic modulation set four
60-epoch ``resnet1d`` teachers averaged 83.5% at SNR >= 0 dB where the best of them reached
82.4%, but a 9,872-parameter student distilled from the four was no better than one distilled
from a single teacher (docs/benchmarks.md).

An ensemble is an ordinary edgekd model named ``ensemble`` whose keyword argument lists its
members, each as it would be passed to ``create_model``::

    members: [{model: resnet1d, kwargs: {strides: [1, 2, 2]}}, {model: "timm:convnextv2_nano"}]

so an ensemble checkpoint loads, hashes into the teacher cache and runs like any other teacher
(feature losses reach a member's layers as ``members.0.stages.2``).
:func:`edgekd.models.checkpoint.combine_checkpoints` writes one from member checkpoints
(``edgekd ensemble``); the factory builds the members of a spec list
(:func:`edgekd.models.factory.build_ensemble`). This module holds the network only: it imports
nothing from the factory or the checkpoints, which both use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError


def member_spec(index: int, spec: Any) -> tuple[str, dict[str, Any]]:
    """``(model name, kwargs)`` of member ``index`` written as ``{model: NAME, kwargs: {...}}``."""
    where = f"model 'ensemble': members[{index}]"
    if not isinstance(spec, Mapping) or not isinstance(spec.get("model"), str):
        raise ConfigError(
            f"{where} must be a mapping with a 'model' name, got {spec!r}",
            hint="write each member as {model: resnet1d, kwargs: {...}}",
        )
    unknown = sorted(set(spec) - {"model", "kwargs"})
    if unknown:
        raise ConfigError(
            f"{where} has unknown keys {unknown}", hint="a member takes only 'model' and 'kwargs'"
        )
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(
            f"{where}: kwargs must be a mapping, got {kwargs!r}", hint="write kwargs as {name: value, ...}"
        )
    return spec["model"], dict(kwargs)


def check_member_count(members: Any) -> None:
    """ConfigError unless ``members`` is a list of at least two (specs or networks)."""
    if isinstance(members, (str, bytes)) or len(members) < 2:
        raise ConfigError(
            f"model 'ensemble' needs at least two members, got {len(members) if members else 0}",
            hint="list the member networks under kwargs.members, or use the one network as the teacher",
        )


class TeacherEnsemble(nn.Module):
    """Networks that teach as one: ``forward`` returns the mean of their logits.

    The mean of logits, not of probabilities: it stays a logit vector, so every logit loss and
    the teacher cache take it as they take one network's output, and a temperature acts on it
    as on a single teacher. Members trained alike have logits of a like scale.

    Args:
        num_classes: logits of every member.
        in_channels: input channels of every member.
        members: at least two networks, built (and maybe trained) already, held as they are.
    """

    def __init__(self, num_classes: int, in_channels: int = 2, members: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        check_member_count(members)
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> [N, K]: the members' mean logits."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


__all__ = ["TeacherEnsemble", "check_member_count", "member_spec"]
