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
(feature losses reach a member's layers as ``members.0.stages.2``). :func:`combine_checkpoints`
writes one from member checkpoints (``edgekd ensemble``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError, InputFileError


def _member_spec(index: int, spec: Any) -> tuple[str, dict[str, Any]]:
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


class TeacherEnsemble(nn.Module):
    """Members built by ``create_model``; ``forward`` returns the mean of their logits.

    The mean of logits, not of probabilities: it stays a logit vector, so every logit loss and
    the teacher cache take it as they take one network's output, and a temperature acts on it
    as on a single teacher. Members trained alike have logits of a like scale.

    Args:
        num_classes: logits of every member.
        in_channels: input channels of every member.
        members: at least two members, each a spec (``model`` and optional ``kwargs``) that
            ``create_model`` builds, or a network already built (and trained) to hold as is.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 2, members: Sequence[Mapping | nn.Module] = ()
    ) -> None:
        super().__init__()
        from edgekd.models.factory import create_model  # the factory registers this class

        if isinstance(members, (str, bytes)) or len(members) < 2:
            raise ConfigError(
                f"model 'ensemble' needs at least two members, got {len(members) if members else 0}",
                hint="list the member networks under kwargs.members, or use the one network as the teacher",
            )

        def build(index: int, spec: Any) -> nn.Module:
            if isinstance(spec, nn.Module):  # built and trained already: held, not rebuilt
                return spec
            name, kwargs = _member_spec(index, spec)
            return create_model(name, num_classes, in_channels, **kwargs)

        self.members = nn.ModuleList(build(i, spec) for i, spec in enumerate(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> [N, K]: the members' mean logits."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def combine_checkpoints(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Write ``out``: one ``ensemble`` checkpoint holding the networks of ``paths``.

    The members must share classes (names and order) and input shape; their weights are held
    unchanged, so the ensemble's logits are exactly the mean of the members'.

    Raises:
        ConfigError: fewer than two paths, or ``out`` among them.
        InputFileError: a member that is not an edgekd checkpoint, or that disagrees with the
            first on classes or input shape.
    """
    from edgekd.models.checkpoint import load_checkpoint, save_checkpoint

    out = Path(out)
    sources = [Path(p) for p in paths]
    if len(sources) < 2:
        raise ConfigError(
            f"an ensemble needs at least two checkpoints, got {len(sources)}",
            hint="pass every member: edgekd ensemble a.pt b.pt --out teacher.pt",
        )
    if any(p.resolve() == out.resolve() for p in sources):
        raise ConfigError(f"--out {out} is one of the members", hint="write the ensemble to a new file")
    loaded = [load_checkpoint(p) for p in sources]
    first = loaded[0][1]
    for path, (_model, meta) in zip(sources[1:], loaded[1:], strict=True):
        for field in ("class_names", "input_shape", "in_channels"):
            if getattr(meta, field) != getattr(first, field):
                raise InputFileError(
                    f"ensemble member {path} has {field} {getattr(meta, field)}, "
                    f"{sources[0]} has {getattr(first, field)}",
                    hint="combine teachers trained on the same data",
                )
    # The loaded networks become the members as they are; the specs let a load rebuild them.
    ensemble = TeacherEnsemble(first.num_classes, first.in_channels, [model for model, _meta in loaded])
    specs = [{"model": meta.model_name, "kwargs": meta.model_kwargs} for _model, meta in loaded]
    save_checkpoint(
        out,
        ensemble.eval(),  # safe: nn.Module.eval(), inference mode
        model_name="ensemble",
        model_kwargs={"members": specs},
        num_classes=first.num_classes,
        in_channels=first.in_channels,
        input_shape=first.input_shape,
        class_names=first.class_names,
        metrics={"members": len(specs)},
        parents=list(sources),
    )
    return out
