"""Target-device profiles: where a model runs, how, and the budgets it must meet.

A profile is YAML data (``targets/*.yaml``), loaded strictly: an unknown key or
a wrong type fails with the key's path and the reason.

The runtimes a profile may name, the devices each takes and the runtime sections it may
carry all come from the backend registry (:data:`edgekd.backends.base.BACKENDS`): a backend
registered with a ``profile_section`` dataclass gives profiles a key named after it
(``onnxruntime: {graph_optimization_level: all}``), with no edit here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Literal

import edgekd.backends  # noqa: F401  (registers the built-in backends a profile may name)
from edgekd import resources
from edgekd.backends.base import BACKENDS, Backend
from edgekd.config import from_dict, load_yaml, to_dict
from edgekd.errors import ConfigError, ShapeError
from edgekd.registry import suggestion
from edgekd.remote.ssh import parse_ssh_url
from edgekd.runtime.inputs import input_mismatch

# Budgets that bound a size or a time: zero would refuse every model, so they are > 0.
_POSITIVE_BUDGETS = ("max_size_bytes", "max_params", "max_macs", "max_p50_ms", "max_p90_ms")
# Budgets that are fractions of an accuracy, in [0, 1].
_FRACTION_BUDGETS = ("min_accuracy", "max_accuracy_drop", "max_accuracy_drop_relative")
_ENTRY_ID = re.compile(r"^[a-z][a-z0-9_-]*/[a-z0-9_-]+$")
MAX_THREADS = 1024
MAX_INPUT_ELEMENTS = 1 << 31  # one input batch of 2^31 floats (8 GiB) is beyond any edge device


@dataclasses.dataclass
class Budgets:
    """Limits a result must meet; a budget left out (null) is not checked.

    Accuracies are fractions in [0, 1]. ``max_accuracy_drop`` is absolute (0.01 = one
    point), ``max_accuracy_drop_relative`` a fraction of the compared accuracy (0.02 =
    2% of it); both compare with ``accuracy_drop_vs``: the baseline result (``--baseline``),
    the bench's reference entry (PyTorch FP32 of the same model), the teacher (its accuracy
    on the same frames, recorded by ``edgekd run`` or ``edgekd bench --teacher``), or
    ``auto`` (the baseline when one is given, else the reference). ``max_latency_regression`` is a
    fraction (0.1 = 10% slower than the baseline), judged by ``latency_method`` (see
    ``edgekd/gate/latency.py``: ``auto``, ``ci``, ``ratio`` or ``absolute``). Sizes are bytes,
    latencies milliseconds; every value is finite, sizes and latencies > 0, and
    ``max_p50_ms`` <= ``max_p90_ms`` (a p50 never exceeds its p90).
    """

    max_size_bytes: int | None = None
    max_params: int | None = None
    max_macs: int | None = None
    max_p50_ms: float | None = None
    max_p90_ms: float | None = None
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_accuracy_drop_relative: float | None = None
    accuracy_drop_vs: Literal["auto", "baseline", "reference", "teacher"] = "auto"
    max_latency_regression: float | None = None
    latency_method: Literal["auto", "ci", "ratio", "absolute"] = "auto"
    latency_anchor: str | None = None
    latency_confidence: float = 0.95

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"budgets.{field.name} must be a finite number, got {value}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"budgets.{field.name} must be >= 0, got {value}")
        for name in _POSITIVE_BUDGETS:
            if getattr(self, name) == 0:
                raise ConfigError(
                    f"budgets.{name} is 0, which no model meets", hint="leave it out to not check it"
                )
        if not 0.5 <= self.latency_confidence < 1.0:
            raise ConfigError(
                f"budgets.latency_confidence must be in [0.5, 1), got {self.latency_confidence}",
                hint="0.95 is the usual choice",
            )
        for name in _FRACTION_BUDGETS:
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ConfigError(
                    f"budgets.{name} is {value}, but accuracies are fractions in [0, 1]",
                    hint=f"write e.g. {value / 100:g} for {value:g}%",
                )
        if self.max_p50_ms is not None and self.max_p90_ms is not None and self.max_p50_ms > self.max_p90_ms:
            raise ConfigError(
                f"budgets.max_p50_ms ({self.max_p50_ms:g} ms) is above budgets.max_p90_ms "
                f"({self.max_p90_ms:g} ms), but a p50 never exceeds its p90",
                hint="swap them, or loosen max_p90_ms",
            )
        if self.latency_anchor is not None and not _ENTRY_ID.match(self.latency_anchor):
            raise ConfigError(
                f"budgets.latency_anchor {self.latency_anchor!r} is not an entry id <backend>/<precision>",
                hint="e.g. torch/fp32",
            )


@dataclasses.dataclass
class TargetProfile:
    """Where a model runs and how: the runtime, its device and settings, and the budgets.

    ``runtime`` names a registered backend (``BACKENDS``: torch, onnxruntime, openvino,
    tensorrt, or one registered by your own module). ``sections`` holds each runtime's own
    settings, keyed by backend name: in YAML a top-level key named after any backend that has
    a ``profile_section`` (``onnxruntime:`` execution mode and graph optimization level,
    ``openvino:`` performance hint and streams, ``torch:`` torch.compile mode); each applies
    to the bench entries of that runtime. ``threads`` applies to every runtime.
    ``input_shape`` is the model input the device serves, batch first (``[1, 2, 128]``):
    where a target meets a model (bench, static gate, deploy) the model's input and the
    data's frames must fit it.

    >>> from edgekd.backends.profile_options import OpenVinoProfile
    >>> TargetProfile(name="t", runtime="openvino", sections={"openvino": OpenVinoProfile(num_streams=2)})
    """

    name: str
    runtime: str
    description: str = ""
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    device: str = "CPU"
    threads: int | None = None
    host: str = "local"
    input_shape: list[int] | None = None
    budgets: Budgets = dataclasses.field(default_factory=Budgets)
    #: backend name -> an instance of that backend's ``profile_section`` dataclass
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def entry_id(self) -> str:
        """The bench entry this target judges: ``<runtime>/<precision>``."""
        return f"{self.runtime}/{self.precision}"

    def section(self, backend: str) -> Any | None:
        """The profile's settings for ``backend`` (its ``profile_section``), None when not given."""
        return self.sections.get(backend)

    @classmethod
    def from_dict(cls, data: Any) -> TargetProfile:
        """A validated profile from plain data (a YAML mapping), strictly: an unknown key, a
        wrong type or a bad value fails with the key's path; a key named after a registered
        backend with a ``profile_section`` is loaded as that dataclass."""
        if not isinstance(data, dict):
            raise ConfigError(f"a target profile must be a mapping, got {type(data).__name__}")
        kinds = profile_sections()
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "sections"]
        plain: dict[str, Any] = {}
        sections: dict[str, Any] = {}
        for key, value in data.items():
            if key in kinds:
                if value is not None:  # `onnxruntime:` left empty is no section, as null
                    sections[key] = from_dict(kinds[key], value, str(key))
            elif key in fields:
                plain[key] = value
            else:
                raise ConfigError(
                    f"unknown config key {str(key)!r}",
                    hint=suggestion(str(key), sorted([*fields, *kinds]), "keys of the top level"),
                )
        return from_dict(cls, {**plain, "sections": sections})

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the YAML shape: each runtime's section is a top-level key (null when
        the profile gives none), so the output loads back with :meth:`from_dict`."""
        out = {
            f.name: to_dict(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("budgets", "sections")
        }
        for name in [*profile_sections(), *sorted(self.sections)]:
            out.setdefault(name, to_dict(self.sections.get(name)))
        out["budgets"] = to_dict(self.budgets)
        return out

    def validate(self) -> None:
        if not self.name.strip() or not self.name.isprintable() or len(self.name) > 200:
            raise ConfigError(f"name {self.name!r} must be one printable line of at most 200 characters")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"threads must be in 1..{MAX_THREADS}, got {self.threads}")
        backend = runtime_backend(self.runtime)
        if not re.fullmatch(backend.device_pattern, self.device.upper()):
            raise ConfigError(
                f"device {self.device!r} is not a {self.runtime} device",
                hint=f"give a {self.runtime} device, e.g. {', '.join(backend.devices)}",
            )
        if self.precision not in backend.precisions:
            runs_it = [n for n in BACKENDS if self.precision in BACKENDS.get(n).precisions]
            raise ConfigError(
                f"runtime {self.runtime} does not run {self.precision}",
                hint=f"use {' or '.join(runs_it)} for {self.precision}",
            )
        if self.host != "local":
            if not self.host.startswith("ssh://"):
                raise ConfigError(f"host {self.host!r} is neither 'local' nor ssh://user@host[:port]")
            parse_ssh_url(self.host)  # port range, a host name ssh accepts
        _check_input_shape(self.input_shape)
        _check_sections(self.sections)

    def input_problem(self, model_shape: Any) -> str | None:
        """Why a model input ``model_shape`` (batch first, None dynamic) does not fit
        ``input_shape``; None when it fits or the target gives no input_shape."""
        if self.input_shape is None:
            return None
        return input_mismatch(model_shape, self.input_shape, f"target {self.name}'s input_shape")

    def check_frames(self, frame_shape: Any, source: str) -> None:
        """ShapeError unless one frame of ``source`` (shape without batch) is ``input_shape[1:]``."""
        if self.input_shape is not None and list(frame_shape) != list(self.input_shape[1:]):
            raise ShapeError(
                f"{source}: frames of shape {list(frame_shape)} do not fit target {self.name}'s "
                f"input_shape {self.input_shape}",
                hint="use the data the target's model takes, or fix the target's input_shape",
            )


def profile_sections() -> dict[str, type]:
    """Backend name -> its ``profile_section`` dataclass, for every registered backend that has one."""
    found = {name: BACKENDS.get(name).profile_section for name in BACKENDS}
    return {name: section for name, section in found.items() if section is not None}


def runtime_backend(name: str) -> Backend:
    """The registered backend a profile's ``runtime`` names; ConfigError (with "did you mean")
    for a name no backend is registered under."""
    if name not in BACKENDS:
        names = BACKENDS.names()
        raise ConfigError(
            f"runtime must be one of {', '.join(map(repr, names))}, got {name!r}",
            hint=suggestion(name, names, "runtimes"),
        )
    return BACKENDS.get(name)


def _check_sections(sections: dict[str, Any]) -> None:
    kinds = profile_sections()
    for name, section in sections.items():
        if name not in kinds:
            raise ConfigError(
                f"no runtime has a profile section {name!r}", hint=suggestion(name, list(kinds), "sections")
            )
        if not isinstance(section, kinds[name]):
            raise ConfigError(
                f"section {name} must be a {kinds[name].__name__}, got {type(section).__name__}"
            )
        section.extra()  # raises ConfigError on a bad value (threads < 1, streams < 1)


def _check_input_shape(shape: list[int] | None) -> None:
    if shape is None:
        return
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise ConfigError(
            f"input_shape {shape} must be [batch, *frame] with every size >= 1", hint="e.g. [1, 2, 128]"
        )
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ConfigError(f"input_shape {shape} holds {math.prod(shape)} values, beyond any device")


def load_target(name_or_path: str | Path) -> TargetProfile:
    """Load a profile by path or built-in name (see ``edgekd/resources.py``)."""
    path = resources.resolve("targets", name_or_path)
    data = load_yaml(path)
    try:
        return TargetProfile.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"target profile {path}: {exc.message}", hint=exc.hint) from None
