"""The one place an ONNX Runtime session is built: typed settings in, a session out.

``open_ort(model, OrtSettings(...))`` is used by the bench backends, the device runner on a
board, export parity, the ONNX teacher, the quantizers' timing and the op profile alike.
onnxruntime is imported inside the functions; a provider missing here is a LookupError
(a state the caller reports as "skipped"), not a crash.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .inputs import check_input_spec
from .threads import default_threads, policy_enabled

_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
_MODES = ("sequential", "parallel")
_FLOAT_INPUTS = ("tensor(float)", "tensor(float16)")


@dataclasses.dataclass
class OrtSettings:
    """How to open an ONNX Runtime session (JSON-ready: it also travels to a device).

    ``providers``: execution providers in priority order. ``execution_mode``: "sequential"
    (one node at a time) or "parallel". ``graph_optimization_level``: an ``ORT_*`` level
    name. ``intra_op_threads``: 0 = :func:`~.threads.default_threads` (ORT's own default
    under ``EDGEKD_THREAD_POLICY=off``); ``inter_op_threads``: 0 = ORT's default.
    ``config_entries``: session config entries (e.g. ``session.disable_quant_qdq``).
    ``enable_profiling`` writes ORT's per-node profile to files starting ``profile_prefix``;
    ``optimized_model_path`` saves the graph ORT really runs. ``log_severity`` 3 = errors
    only (warnings about unused initializers etc. are noise in a measurement).
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    execution_mode: str = "sequential"
    graph_optimization_level: str = "ORT_ENABLE_ALL"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    config_entries: dict[str, str] = dataclasses.field(default_factory=dict)
    enable_profiling: bool = False
    profile_prefix: str | None = None
    optimized_model_path: str | None = None
    log_severity: int = 3

    def __post_init__(self) -> None:
        self.providers = tuple(self.providers)
        if not self.providers:
            raise ValueError("OrtSettings.providers is empty")
        if self.execution_mode not in _MODES:
            raise ValueError(f"execution_mode {self.execution_mode!r} is not one of {', '.join(_MODES)}")
        if self.graph_optimization_level not in _LEVELS:
            level = self.graph_optimization_level
            raise ValueError(f"graph_optimization_level {level!r} is not one of {', '.join(_LEVELS)}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 = the runtime's default)")

    def to_json(self) -> dict[str, Any]:
        """Plain data (lists, dicts, str, int) for job.json."""
        data = dataclasses.asdict(self)
        data["providers"] = list(self.providers)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrtSettings:
        """The settings :meth:`to_json` wrote; ValueError on an unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown onnxruntime settings {', '.join(unknown)}")
        return cls(**data)


def session_options(ort: Any, settings: OrtSettings) -> Any:
    """The ``onnxruntime.SessionOptions`` for ``settings``."""
    so = ort.SessionOptions()
    parallel = settings.execution_mode == "parallel"
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization_level)
    so.log_severity_level = settings.log_severity
    if settings.intra_op_threads:
        so.intra_op_num_threads = int(settings.intra_op_threads)
    elif policy_enabled():
        # ORT's own default counts the machine's cores, ignoring the affinity mask and cgroup
        # quota (under `taskset -c 0` it still starts two threads): use the cores we may use.
        so.intra_op_num_threads = default_threads()
    if settings.inter_op_threads:
        so.inter_op_num_threads = int(settings.inter_op_threads)
    for key, value in settings.config_entries.items():
        so.add_session_config_entry(key, str(value))
    if settings.enable_profiling:
        so.enable_profiling = True
        if settings.profile_prefix:
            so.profile_file_prefix = settings.profile_prefix
    if settings.optimized_model_path:
        so.optimized_model_filepath = settings.optimized_model_path
    return so


def open_ort(model: Any, settings: OrtSettings | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, serialized bytes or an
    ``onnx.ModelProto``) with ``settings`` (default: CPU, all optimizations, ORT's threads).

    Raises:
        LookupError: the first provider is not available in this onnxruntime.
        ImportError: onnxruntime is not installed.
        Anything ONNX Runtime raises for a model it cannot load (its own exception types).
    """
    import onnxruntime as ort

    settings = settings or OrtSettings()
    available = ort.get_available_providers()
    if settings.providers[0] not in available:
        raise LookupError(f"onnxruntime has no {settings.providers[0]}; available: {', '.join(available)}")
    if isinstance(model, (str, os.PathLike)):
        source: Any = os.fspath(model)
    elif isinstance(model, (bytes, bytearray)):
        source = bytes(model)
    else:  # an onnx.ModelProto
        source = model.SerializeToString()
    return ort.InferenceSession(
        source, sess_options=session_options(ort, settings), providers=list(settings.providers)
    )


@dataclasses.dataclass(frozen=True)
class OrtInput:
    """The one float input of a session: its name, shape (None = dynamic axis), the cast an
    fp16-input model needs (None for float32) and the first output's name."""

    name: str
    shape: tuple[int | None, ...]
    cast: Any
    output: str


def ort_input(session: Any, name: str) -> OrtInput:
    """The session's single float input; ValueError (naming ``name``) otherwise."""
    inputs = session.get_inputs()
    check_input_spec([i.type for i in inputs], _FLOAT_INPUTS, name)
    spec = inputs[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)
    cast = np.float16 if spec.type == "tensor(float16)" else None
    return OrtInput(spec.name, shape, cast, session.get_outputs()[0].name)


def ort_runner(session: Any, name: str) -> tuple[Callable[[Any], Any], tuple[int | None, ...]]:
    """``(run, input shape)``: ``run(x)`` feeds float32 frames (cast for an fp16-input model,
    inside the timed call as a deployment would) and returns the first output as float32."""
    spec = ort_input(session, name)
    feed_name, outputs, cast = spec.name, [spec.output], spec.cast

    def run(x: Any) -> Any:
        if cast is not None:
            x = x.astype(cast)
        return np.asarray(session.run(outputs, {feed_name: x})[0], dtype=np.float32)

    return run, spec.shape
