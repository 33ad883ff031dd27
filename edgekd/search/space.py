"""The candidates of a student search: a family of networks and a grid over its shape knobs.

A :class:`SearchSpace` (the ``search.space`` section of a recipe) names a family of
:data:`FAMILIES` and, per knob, the values to try; a knob left out takes the family's default
values, and ``fixed`` kwargs go to every candidate. :func:`candidates` expands the grid into
:class:`Candidate` s: a model name :func:`edgekd.models.factory.create_model` accepts plus its
kwargs, identified by an architecture hash (:meth:`Candidate.key`) under which latencies are
cached and results reported.

>>> space = SearchSpace(family="mobilenet1d", grid={"width_mult": [0.5, 1.0]})
>>> space.validate()
>>> [c.label() for c in candidates(space)][:2]
['mobilenet1d w0.5 d0 k5 s1', 'mobilenet1d w0.5 d0 k5 s2']

Family defaults are sized for a search of minutes on a 2-core CPU: each candidate is built
and measured on the target once (then cached) and ranked by a proxy of milliseconds; only
the best few are trained (:mod:`edgekd.search.halving`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry, suggestion

# Short label prefixes of the knobs, for tables and logs ("mobilenet1d w0.75 d2 k5 s1").
_SHORT = {"width_mult": "w", "width": "w", "depth": "d", "kernel_size": "k", "stem_stride": "s",
          "blocks": "b", "strides": "st"}  # fmt: skip


def _freeze(value: Any) -> Any:
    """Lists (and tuples) as tuples, recursively, so a Candidate is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One student architecture: ``model`` (a name :func:`create_model` accepts, e.g.
    ``"edgekd:mobilenet1d"`` or ``"timm:mobilenetv3_small_050"``) and its ``kwargs`` as sorted
    ``(name, value)`` pairs with JSON values, lists stored as tuples."""

    model: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, model: str, kwargs: Mapping[str, Any] | None = None) -> Candidate:
        """A Candidate from a kwargs mapping (sorted and frozen here)."""
        return cls(model, tuple(sorted((k, _freeze(v)) for k, v in (kwargs or {}).items())))

    def kwargs_dict(self) -> dict[str, Any]:
        """The kwargs as a dict, lists back as lists (what create_model and YAML take)."""
        return {name: _thaw(value) for name, value in self.kwargs}

    def key(self) -> str:
        """Architecture hash: the first 16 hex digits of the sha256 of the canonical JSON
        ``{"model", "kwargs"}``; the same architecture gives the same key in every run."""
        text = json.dumps(
            {"model": self.model, "kwargs": self.kwargs_dict()},
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def label(self) -> str:
        """Short human name: ``"mobilenet1d w0.75 d2 k5 s1"``, ``"mobilenetv3_small_050"``."""
        parts = [self.model.partition(":")[2] or self.model]
        order = list(_SHORT)
        # Known knobs first in a fixed order (width before depth), then the rest by name.
        ranked = sorted(
            self.kwargs, key=lambda kv: (order.index(kv[0]) if kv[0] in _SHORT else len(order), kv[0])
        )
        for name, value in ranked:
            text = "-".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            parts.append(f"{_SHORT[name]}{text}" if name in _SHORT else f"{name}={text}")
        return " ".join(parts)

    def build(self, num_classes: int, in_channels: int) -> nn.Module:
        """The network at initialisation (seed the global RNG first for reproducible weights)."""
        from edgekd.models.factory import create_model  # the zoo imports are heavy

        return create_model(self.model, num_classes, in_channels, **self.kwargs_dict())


# --- knobs and families -----------------------------------------------------------------


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _positive_int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(_positive_int(v) for v in value)


def _timm_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and ":" not in value


@dataclasses.dataclass(frozen=True)
class Knob:
    """One shape knob of a family: its default values, what a value must be, and a normaliser
    so that equal settings written differently (``1`` and ``1.0``) hash alike."""

    default: tuple[Any, ...]
    check: Callable[[Any], bool]
    expects: str
    normalise: Callable[[Any], Any] = lambda value: value


def number_knob(*default: float) -> Knob:
    return Knob(default, _positive_number, "a positive number", float)


def int_knob(*default: int, zero_ok: bool = False) -> Knob:
    if zero_ok:
        return Knob(default, _non_negative_int, "an integer >= 0")
    return Knob(default, _positive_int, "a positive integer")


def list_knob(*default: tuple[int, ...]) -> Knob:
    return Knob(default, _positive_int_list, "a non-empty list of positive integers", _freeze)


def variant_knob(*default: str) -> Knob:
    return Knob(default, _timm_name, "a timm model name")


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of students. ``model``: the create_model name every candidate uses, or None
    for a timm family, whose ``variant`` knob names the model (``"timm:<variant>"``).
    ``inputs``: ``"frames"`` ([C, L] signals) or ``"images"`` ([C, H, W])."""

    name: str
    model: str | None
    knobs: Mapping[str, Knob]
    inputs: str
    doc: str

    def candidate(self, settings: Mapping[str, Any]) -> Candidate:
        """The Candidate for one point of the grid (knob values plus fixed kwargs)."""
        kwargs = dict(settings)
        if self.model is None:
            return Candidate.of(f"timm:{kwargs.pop('variant')}", kwargs)
        return Candidate.of(self.model, kwargs)


def timm_family(name: str, doc: str, *variants: str) -> Family:
    return Family(name, None, {"variant": variant_knob(*variants)}, "images", doc)


_BUILT_IN: dict[str, Family] = {
    # 5 widths x 3 depths x 2 stem strides = 30 candidates around the hand-picked students
    # (cnn1d_small 0.29M MACs, mobilenet1d 0.39M per 2x128 frame). Widths reach 2x because
    # at these sizes a CPU runtime's cost is per layer, not per channel: on ONNX Runtime INT8,
    # one thread, width 0.5 -> 2.0 at depth 0 moved p50 from 0.018 to 0.021 ms while one more
    # stride-1 block per stage added 0.005-0.01 ms, and with widths up to 2.0 the search found a
    # student 0.87x as fast as the hand-picked one at its accuracy, against 0.93x and -1.1
    # points with widths up to 1.0 (docs/benchmarks.md, issue #18). The stem stride is in
    # because a stride-1 stem was worth 3.3 points on the modulation set; kernel_size stays at
    # 5 because depthwise taps are a small share of the MACs: add 7 to the grid to try it.
    "mobilenet1d": Family(
        "mobilenet1d",
        "edgekd:mobilenet1d",
        {
            "width_mult": number_knob(0.5, 0.75, 1.0, 1.5, 2.0),
            "depth": int_knob(0, 1, 2, zero_ok=True),
            "kernel_size": int_knob(5),
            "stem_stride": int_knob(1, 2),
        },
        "frames",
        "1-D MobileNet: width multiplier, stride-1 blocks per stage, depthwise taps, stem stride",
    ),
    # 4 x 3 = 12 candidates, 76k-645k MACs per 2x128 frame: the default (width 16, 7 taps) in
    # the middle, half and 1.5x its width either side.
    "cnn1d_small": Family(
        "cnn1d_small",
        "edgekd:cnn1d_small",
        {"width": int_knob(8, 12, 16, 24), "kernel_size": int_knob(5, 7, 9)},
        "frames",
        "small plain 1-D CNN: first-layer width and taps",
    ),
    # 2 x 2 x 2 = 8 candidates: residual students are 10x the MACs of the others (0.64-3M),
    # so fewer of them; strides [1, 2, 2] keep the full length in the first stage.
    "resnet1d": Family(
        "resnet1d",
        "edgekd:resnet1d",
        {
            "width": int_knob(16, 24),
            "blocks": list_knob((1, 1, 1), (2, 2, 2)),
            "strides": list_knob((2, 2, 2), (1, 2, 2)),
        },
        "frames",
        "1-D ResNet: width, blocks per stage, stride per stage (3 stages unless fixed.multipliers)",
    ),
    # timm families: their width/depth multipliers come as named variants. The defaults are
    # the variants that train in minutes on small images on a CPU (no b3+, no large ResNets).
    "mobilenetv3": timm_family(
        "mobilenetv3",
        "timm MobileNetV3, small and large at several widths",
        "mobilenetv3_small_050",
        "mobilenetv3_small_075",
        "mobilenetv3_small_100",
        "mobilenetv3_large_075",
        "mobilenetv3_large_100",
    ),
    "efficientnet": timm_family(
        "efficientnet",
        "timm EfficientNet: lite0 (no SE, ReLU6: edge-friendly), edge-small, b0-b2",
        "efficientnet_lite0",
        "efficientnet_es",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
    ),
    "ghostnet": timm_family(
        "ghostnet", "timm GhostNet at widths 0.5, 1.0, 1.3", "ghostnet_050", "ghostnet_100", "ghostnet_130"
    ),
    "resnet": timm_family(
        "resnet",
        "timm ResNets with a deep stem (10 and 14 layers) and ResNet-18",
        "resnet10t",
        "resnet14t",
        "resnet18",
    ),
}

#: Search families by name. A family from your own module joins with
#: ``FAMILIES.register("name", Family(...))`` (docs/extending.md); a taken name is refused.
FAMILIES: Registry[Family] = Registry("search family")
for _name, _family in _BUILT_IN.items():
    FAMILIES.register(_name, _family)


@dataclasses.dataclass
class SearchSpace:
    """``family``: a key of :data:`FAMILIES`. ``grid``: knob -> values to try; a knob left out
    takes the family's default values. ``fixed``: kwargs passed to every candidate (e.g.
    ``dropout``, or ``multipliers`` for resnet1d blocks of another length)."""

    family: str = "mobilenet1d"
    grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Refuse an unknown family or knob ("did you mean"), an empty or ill-typed value list,
        a knob both in ``grid`` and ``fixed``, a non-JSON fixed value, and (timm families, where
        timm is installed) a variant timm does not know."""
        family = self._family()
        for knob, values in self.grid.items():
            if knob not in family.knobs:
                raise ConfigError(
                    f"search.space.grid: {family.name} has no knob {knob!r}",
                    hint=suggestion(knob, list(family.knobs), f"knobs of {family.name}")
                    + "; other model arguments go in search.space.fixed",
                )
            _check_values(family, knob, values)
        for name, value in self.fixed.items():
            if name in self.grid or (family.model is None and name == "variant"):
                raise ConfigError(
                    f"search.space: {name!r} is both a grid knob and a fixed value",
                    hint=f"keep {name} in one of search.space.grid and search.space.fixed",
                )
            _check_json(f"search.space.fixed.{name}", value)
        if family.model is None:
            _check_timm_variants(family, self.grid.get("variant", list(family.knobs["variant"].default)))

    def _family(self) -> Family:
        if self.family not in FAMILIES:
            raise ConfigError(
                f"search.space.family: unknown family {self.family!r}",
                hint=suggestion(self.family, list(FAMILIES), "families"),
            )
        return FAMILIES.get(self.family)

    def values(self) -> dict[str, list[Any]]:
        """Knob -> the values tried (grid or family default), normalised and de-duplicated."""
        family = self._family()
        out: dict[str, list[Any]] = {}
        for name, knob in family.knobs.items():
            raw = self.grid.get(name, list(knob.default))
            out[name] = list(dict.fromkeys(knob.normalise(v) for v in raw))
        return out


def _check_values(family: Family, knob: str, values: Any) -> None:
    where = f"search.space.grid.{knob}"
    if not isinstance(values, list) or not values:
        raise ConfigError(
            f"{where} must be a non-empty list of values, got {values!r}",
            hint=f"e.g. {knob}: {list(_thaw(family.knobs[knob].default))}",
        )
    spec = family.knobs[knob]
    for value in values:
        if not spec.check(value):
            raise ConfigError(f"{where}: every value must be {spec.expects}, got {value!r}")


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _check_json(where: str, value: Any) -> None:
    # Mappings are refused too: a Candidate must stay hashable and its key canonical.
    if not _plain(value):
        raise ConfigError(
            f"{where} must be a number, string, boolean, null or a list of them, got {value!r}",
            hint="give model arguments that are mappings in the student section instead",
        )


def _check_timm_variants(family: Family, variants: list[Any]) -> None:
    if importlib.util.find_spec("timm") is None:
        return  # building a candidate then says timm is missing, with the install hint
    import timm  # heavy; only for timm families

    for variant in variants:
        if not timm.is_model(variant):
            close = suggestion(variant, timm.list_models(f"{variant.split('_')[0]}*"), "similar timm models")
            raise ConfigError(f"search.space.grid.variant: timm has no model {variant!r}", hint=close)


def candidates(space: SearchSpace) -> list[Candidate]:
    """The cartesian product of the grid, in a deterministic order (knobs as the family lists
    them, values as the grid lists them), each architecture once; ``fixed`` added to each."""
    space.validate()
    family = FAMILIES.get(space.family)
    values = space.values()
    names = list(values)
    out: dict[str, Candidate] = {}
    for point in itertools.product(*(values[n] for n in names)):
        candidate = family.candidate({**space.fixed, **dict(zip(names, point, strict=True))})
        out.setdefault(candidate.key(), candidate)
    return list(out.values())


__all__ = [
    "FAMILIES", "Candidate", "Family", "Knob", "SearchSpace", "candidates",
    "int_knob", "list_knob", "number_knob", "timm_family", "variant_knob",
]  # fmt: skip
