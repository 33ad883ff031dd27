"""Runtime settings a target profile may carry, typed, and the SessionOptions they make.

A target profile says where and how a model runs; these sections say how each runtime
is tuned there (the ``onnxruntime:``, ``openvino:`` and ``torch:`` keys of ``targets/*.yaml``)::

    runtime: onnxruntime
    device: CPU            # onnxruntime: CPU, CUDA, TENSORRT; openvino: CPU, GPU, NPU, AUTO
    threads: 2
    onnxruntime: {execution_mode: sequential, graph_optimization_level: all}
    openvino: {performance_hint: LATENCY, num_streams: 1}
    torch: {compile: default}   # torch.compile mode for the PyTorch entries; none = eager

Each dataclass here is a built-in backend's ``profile_section``; a target profile's sections
follow the backend registry, so a backend registered elsewhere brings its own.
:func:`options_from_target` turns a profile into the :class:`SessionOptions` the backends
take, and :func:`resolve_threads` is the one rule for the thread count. A provider or device
absent here makes the bench entry "skipped" with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from edgekd.backends.base import BACKENDS, SessionOptions
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


def resolve_threads(cli: int | None, target: Any = None, *, source: str = "--threads") -> int | None:
    """The one thread-count rule: ``cli`` (``--threads``, a recipe's ``bench.threads``) over
    the target profile's ``threads`` over None (the runtime's default); validated here, once.

    ``source`` names ``cli`` in the error ("--threads", "bench.threads").

    >>> resolve_threads(None, load_target("x86-cpu-onnxruntime-int8"))  # the profile's threads
    2

    Raises:
        ConfigError: a count outside 1..MAX_THREADS, naming where it came from.
    """
    from edgekd.targets import MAX_THREADS

    if cli is not None:
        threads, where = cli, source
    else:
        threads, where = getattr(target, "threads", None), "threads"
    if threads is not None and (isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"{where} must be in 1..{MAX_THREADS}, got {threads}")
    return threads


def _section(target: Any, backend: str) -> Any | None:
    """The target's settings for ``backend``: its own section, else the section's defaults
    (None when the backend has no ``profile_section``)."""
    section_type = BACKENDS.get(backend).profile_section if backend in BACKENDS else None
    if section_type is None:
        return None
    return target.section(backend) or section_type()


def options_from_target(target: Any, threads: int | None = None) -> SessionOptions:
    """SessionOptions for ``target`` (an :class:`edgekd.targets.TargetProfile`) on its own runtime.

    Reads ``runtime``, ``device``, ``threads`` (``threads`` given here wins, see
    :func:`resolve_threads`), ``precision`` and the profile's section for its runtime (the
    backend's ``profile_section``, e.g. :class:`OrtProfile`), its defaults when absent.

    >>> options_from_target(load_target("x86-cpu-openvino-fp32")).extra
    {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1'}
    """
    section = _section(target, target.runtime)
    options = SessionOptions(
        threads=resolve_threads(threads, target),
        device=target.device,
        precision=target.precision,
        extra=section.extra() if section is not None else {},
    )
    options.validate()
    return options


def options_for_entry(
    target: Any, backend: str, precision: str, threads: int | None = None
) -> SessionOptions:
    """SessionOptions for one bench entry ``backend/precision`` run for ``target``.

    The target's section for ``backend`` applies to that backend's entries whatever the
    target's own runtime, so a bench comparing runtimes tunes each the way the profile says;
    the target's ``device`` only applies to its own runtime (an OpenVINO ``GPU`` means nothing
    to ONNX Runtime). Threads follow :func:`resolve_threads` (``threads`` over the target's).
    Without a target: the runtime defaults.
    """
    if target is None:
        options = SessionOptions(threads=resolve_threads(threads), precision=precision)
    elif backend == target.runtime:
        options = dataclasses.replace(options_from_target(target, threads), precision=precision)
    else:
        section = target.section(backend) if backend in BACKENDS else None
        options = SessionOptions(
            threads=resolve_threads(threads, target),
            precision=precision,
            extra=section.extra() if section is not None else {},
        )
    options.validate()
    return options
