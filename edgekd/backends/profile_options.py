"""Runtime settings a target profile may carry, typed, and the SessionOptions they make.

A target profile says where and how a model runs; these sections say how each runtime
is tuned there (the ``onnxruntime:`` and ``openvino:`` keys of ``targets/*.yaml``)::

    runtime: onnxruntime
    device: CPU            # onnxruntime: CPU, CUDA, TENSORRT; openvino: CPU, GPU, NPU, AUTO
    threads: 2
    onnxruntime: {execution_mode: sequential, graph_optimization_level: all}
    openvino: {performance_hint: LATENCY, num_streams: 1}

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


def options_from_target(target: Any) -> SessionOptions:
    """SessionOptions for ``target`` (an :class:`edgekd.targets.TargetProfile`).

    Reads ``runtime``, ``device``, ``threads``, ``precision`` and, when the profile has
    them, its ``onnxruntime`` (:class:`OrtProfile`) or ``openvino``
    (:class:`OpenVinoProfile`) section for the matching runtime.

    >>> options_from_target(load_target("x86-cpu-openvino-fp32")).extra
    {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1'}
    """
    extra: dict[str, str] = {}
    if target.runtime == "onnxruntime":
        extra = (getattr(target, "onnxruntime", None) or OrtProfile()).extra()
    elif target.runtime == "openvino":
        extra = (getattr(target, "openvino", None) or OpenVinoProfile()).extra()
    options = SessionOptions(
        threads=target.threads, device=target.device, precision=target.precision, extra=extra
    )
    options.validate()
    return options
