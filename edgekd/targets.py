"""Target-device profiles: where a model runs, how, and the budgets it must meet.

A profile is YAML data (``targets/*.yaml``), loaded strictly: an unknown key or
a wrong type fails with the key's path and the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from edgekd import resources
from edgekd.backends.profile_options import OpenVinoProfile, OrtProfile, TorchProfile
from edgekd.config import from_dict, load_yaml
from edgekd.errors import ConfigError

Runtime = Literal["torch", "onnxruntime", "openvino", "tensorrt"]


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
    ``edgekd/gate/latency.py``: ``ci``, ``ratio`` or ``absolute``).
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
    latency_method: Literal["ci", "ratio", "absolute"] = "ci"
    latency_anchor: str | None = None
    latency_confidence: float = 0.95

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"budgets.{field.name} must be >= 0, got {value}")
        if not 0.5 <= self.latency_confidence < 1.0:
            raise ConfigError(
                f"budgets.latency_confidence must be in [0.5, 1), got {self.latency_confidence}",
                hint="0.95 is the usual choice",
            )
        for name in ("min_accuracy", "max_accuracy_drop", "max_accuracy_drop_relative"):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ConfigError(
                    f"budgets.{name} is {value}, but accuracies are fractions in [0, 1]",
                    hint=f"write e.g. {value / 100:g} for {value:g}%",
                )


@dataclasses.dataclass
class TargetProfile:
    """Where a model runs and how: the runtime, its device and settings, and the budgets.

    ``onnxruntime``, ``openvino`` and ``torch`` are the runtime's own settings (execution
    mode, graph optimization level; performance hint, streams; torch.compile mode); each
    applies to the bench entries of that runtime. ``threads`` applies to every runtime.
    """

    name: str
    runtime: Runtime
    description: str = ""
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    device: str = "CPU"
    threads: int | None = None
    host: str = "local"
    input_shape: list[int] | None = None
    onnxruntime: OrtProfile | None = None
    openvino: OpenVinoProfile | None = None
    torch: TorchProfile | None = None
    budgets: Budgets = dataclasses.field(default_factory=Budgets)

    @property
    def entry_id(self) -> str:
        """The bench entry this target judges: ``<runtime>/<precision>``."""
        return f"{self.runtime}/{self.precision}"

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.host != "local" and not self.host.startswith("ssh://"):
            raise ConfigError(f"host {self.host!r} is neither 'local' nor ssh://user@host[:port]")
        for section in (self.onnxruntime, self.openvino):
            if section is not None:
                section.extra()  # raises ConfigError on a bad value (threads < 1, streams < 1)


def load_target(name_or_path: str | Path) -> TargetProfile:
    """Load a profile by path or built-in name (see ``edgekd/resources.py``)."""
    path = resources.resolve("targets", name_or_path)
    data = load_yaml(path)
    try:
        return from_dict(TargetProfile, data)
    except ConfigError as exc:
        raise ConfigError(f"target profile {path}: {exc.message}", hint=exc.hint) from None
