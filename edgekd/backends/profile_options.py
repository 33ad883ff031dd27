"""Runtime settings a target profile may carry, typed, and the SessionOptions they make.

A target profile says where and how a model runs; these sections say how each runtime
is tuned there (the ``onnxruntime:``, ``openvino:`` and ``torch:`` keys of ``targets/*.yaml``)::

    runtime: onnxruntime
    device: CPU            # onnxruntime: CPU, CUDA, TENSORRT; openvino: CPU, GPU, NPU, AUTO
    threads: 2
    onnxruntime: {execution_mode: sequential, graph_optimization_level: all}
    openvino: {performance_hint: LATENCY, num_streams: 1}
    torch: {compile: default}   # torch.compile mode for the PyTorch entries; none = eager

:func:`options_from_target` turns a profile into the :class:`SessionOptions` the backends
take. A provider or device absent here makes the bench entry "skipped" with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from edgekd.backends.base import SessionOptions
from edgekd.errors import ConfigError


@dataclasses.dataclass
class OrtProfile:
    """ONNX Runtime session settings.

    ``execution_mode``: "sequential" runs one node at a time (the latency default);
    "parallel" lets ``inter_op_threads`` run independent branches at once.
    ``graph_optimization_level``: disable | basic | extended | all.
    ``inter_op_threads``: threads across nodes (parallel mode); None = 1 when threads is set.
    """

    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    inter_op_threads: int | None = None

    def extra(self) -> dict[str, str]:
        if self.inter_op_threads is not None and self.inter_op_threads < 1:
            raise ConfigError(f"onnxruntime.inter_op_threads must be >= 1, got {self.inter_op_threads}")
        out = {
            "execution_mode": self.execution_mode,
            "graph_optimization_level": self.graph_optimization_level,
        }
        if self.inter_op_threads is not None:
            out["inter_op_num_threads"] = str(self.inter_op_threads)
        return out


@dataclasses.dataclass
class OpenVinoProfile:
    """OpenVINO compile settings.

    ``performance_hint``: LATENCY (one request at a time) | THROUGHPUT |
    CUMULATIVE_THROUGHPUT. ``num_streams``: parallel inference streams; None lets the
    hint choose (LATENCY picks 1).
    """

    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = "LATENCY"
    num_streams: int | None = 1

    def extra(self) -> dict[str, str]:
        if self.num_streams is not None and self.num_streams < 1:
            raise ConfigError(f"openvino.num_streams must be >= 1 or null, got {self.num_streams}")
        out = {"PERFORMANCE_HINT": self.performance_hint}
        if self.num_streams is not None:
            out["NUM_STREAMS"] = str(self.num_streams)
        return out


@dataclasses.dataclass
class TorchProfile:
    """PyTorch settings: ``compile`` is "none" (eager) or a ``torch.compile`` mode
    ("default", "reduce-overhead", "max-autotune"); compilation runs on the first call."""

    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"

    def extra(self) -> dict[str, str]:
        return {} if self.compile == "none" else {"compile": self.compile}


_SECTIONS = {"onnxruntime": OrtProfile, "openvino": OpenVinoProfile, "torch": TorchProfile}


def options_from_target(target: Any) -> SessionOptions:
    """SessionOptions for ``target`` (an :class:`edgekd.targets.TargetProfile`).

    Reads ``runtime``, ``device``, ``threads``, ``precision`` and, when the profile has
    them, its ``onnxruntime`` (:class:`OrtProfile`), ``openvino`` (:class:`OpenVinoProfile`)
    or ``torch`` (:class:`TorchProfile`) section for the matching runtime.

    >>> options_from_target(load_target("x86-cpu-openvino-fp32")).extra
    {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1'}
    """
    extra: dict[str, str] = {}
    if target.runtime in _SECTIONS:
        extra = (getattr(target, target.runtime, None) or _SECTIONS[target.runtime]()).extra()
    options = SessionOptions(
        threads=target.threads, device=target.device, precision=target.precision, extra=extra
    )
    options.validate()
    return options


def options_for_entry(
    target: Any, backend: str, precision: str, threads: int | None = None
) -> SessionOptions:
    """SessionOptions for one bench entry ``backend/precision`` run for ``target``.

    The target's section for ``backend`` (``onnxruntime:`` or ``openvino:``) applies to that
    backend's entries whatever the target's own runtime, so a bench comparing runtimes tunes
    each the way the profile says; the target's ``device`` only applies to its own runtime
    (an OpenVINO ``GPU`` means nothing to ONNX Runtime). ``threads`` overrides the target's.
    Without a target: the runtime defaults, as before.
    """
    if target is None:
        options = SessionOptions(threads=threads, precision=precision)
    elif backend == target.runtime:
        options = dataclasses.replace(options_from_target(target), precision=precision)
    else:
        section = getattr(target, backend, None) if backend in _SECTIONS else None
        options = SessionOptions(
            threads=target.threads, precision=precision, extra=section.extra() if section else {}
        )
    if threads is not None:
        options = dataclasses.replace(options, threads=threads)
    options.validate()
    return options
