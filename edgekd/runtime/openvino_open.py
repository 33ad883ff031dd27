"""The one place an OpenVINO model is compiled, the fast way to feed it, and what it executes in.

``compile_ov(path_or_model, OvSettings(...))`` serves the bench backend, the device runner,
export parity, QAT checks and the quantizers' timing; :func:`ov_request_runner` is how every
one of them feeds an infer request. openvino is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .threads import policy_enabled, user_threads

# Runtime-graph layer types that carry the arithmetic; their runtimePrecision says what executes.
_OV_COMPUTE = frozenset(
    {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}
)
_FLOAT_INPUTS = ("f32", "f16")


@dataclasses.dataclass
class OvSettings:
    """How to compile: ``device`` ("CPU", "GPU", "NPU", "AUTO", ...) and the compile
    ``config`` properties (e.g. ``{"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}``)."""

    device: str = "CPU"
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "config": {str(k): str(v) for k, v in self.config.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OvSettings:
        unknown = sorted(set(data) - {"device", "config"})
        if unknown:
            raise ValueError(f"unknown openvino settings {', '.join(unknown)}")
        return cls(device=data.get("device", "CPU"), config=dict(data.get("config") or {}))


def new_core() -> Any:
    """A fresh ``openvino.Core``."""
    import openvino as ov

    return ov.Core()


def compile_ov(model: Any, settings: OvSettings | None = None, core: Any = None) -> Any:
    """``CompiledModel`` of ``model`` (an IR/ONNX path or an ``openvino.Model``) for
    ``settings`` (default: CPU, the plugin's own defaults), on ``core`` (a new Core by default).
    On the CPU without an ``INFERENCE_NUM_THREADS``, a user's ``OMP_NUM_THREADS`` sets it.

    Raises whatever OpenVINO raises (RuntimeError for a model or config it refuses).
    """
    settings = settings or OvSettings()
    core = core if core is not None else new_core()
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
    config = dict(settings.config)
    threads = user_threads() if policy_enabled() else None
    if threads and settings.device.upper() == "CPU" and "INFERENCE_NUM_THREADS" not in config:
        # The CPU plugin's own default already follows the affinity; OMP_NUM_THREADS it ignores.
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(source, settings.device, config)


def ov_input_shape(model: Any) -> tuple[int | None, ...]:
    """Input shape of an ``openvino.Model`` (or CompiledModel), None for a dynamic axis;
    ValueError unless it has exactly one float input."""
    check_ov_inputs(model, "the model")
    return tuple(d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape())


def check_ov_inputs(model: Any, name: str) -> None:
    """ValueError unless ``model`` has exactly one f32/f16 input."""
    from .inputs import check_input_spec

    check_input_spec([str(i.get_element_type().get_type_name()) for i in model.inputs], _FLOAT_INPUTS, name)


def ov_executed_precision(compiled: Any, model: Any) -> str:
    """What an OpenVINO compiled model computes in (the one answer, here and on a device).

    "int8" when a compute layer of the plugin's runtime graph runs in i8/u8 (FakeQuantize or
    Q/DQ fused into integer kernels), or when the IR holds FakeQuantize and the runtime graph
    cannot be read. Otherwise the read-back INFERENCE_PRECISION_HINT: f32 -> "fp32",
    bf16 -> "bf16", f16 -> "fp16".
    """
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    float_label = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)
    try:
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else None
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else None
            if kind in _OV_COMPUTE and prec in ("i8", "u8"):
                return "int8"
    except RuntimeError:  # plugins other than CPU/GPU may not expose a runtime graph
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            return "int8"
    return float_label


def ov_request_runner(request: Any) -> Callable[[Any], Any]:
    """``run(x) -> first output`` for an OpenVINO InferRequest, the fast way.

    ``request.infer({0: x})`` builds a dict, wraps tensors and copies every output: on a
    small model that is more than half the call (78 vs 40 us for a 2x128 CNN). Copying
    the frames into the request's own input tensor, ``infer()`` with no arguments and
    copying the first output costs a few microseconds. The input tensor is re-shaped
    only when the batch changes (dynamic-batch models). ``run.runtime_ms()`` is OpenVINO's
    own timing of the last call (ms): what benchmark_app reports, without Python.
    """
    cache: list[Any] = [None, None]  # (shape, numpy view of the input tensor)

    def run(x: Any) -> Any:
        if cache[0] != x.shape:
            tensor = request.get_input_tensor(0)
            if tuple(tensor.shape) != x.shape:
                tensor.shape = list(x.shape)
            cache[0], cache[1] = x.shape, tensor.data
        cache[1][...] = x
        request.infer()
        return request.get_output_tensor(0).data.copy()

    run.runtime_ms = lambda: float(request.latency)  # type: ignore[attr-defined]
    return run


def ov_predict(compiled: Any, samples: Any, batch_size: int) -> Any:
    """First output of ``compiled`` on ``samples`` [N, ...], ``batch_size`` frames a call (a
    static batch is honoured: ValueError when N is not a multiple of it), float32 [N, ...]."""
    import numpy as np

    shape = compiled.inputs[0].get_partial_shape()
    fixed = shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None
    step = fixed or batch_size
    if fixed and len(samples) % fixed:
        raise ValueError(
            f"the model's batch size is fixed to {fixed}; {len(samples)} frames are not a multiple"
        )
    run = ov_request_runner(compiled.create_infer_request())
    return np.concatenate([run(samples[i : i + step]) for i in range(0, len(samples), step)], axis=0)
