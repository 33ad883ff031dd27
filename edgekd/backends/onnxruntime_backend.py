"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider (CPU by default).

Sessions run sequentially with full graph optimisation unless ``options.extra`` says
otherwise (see :func:`resolve_ort_options`), so latency reflects one
request on ``threads`` intra-op threads. The executed precision comes from the graph
AND the session settings (a Q/DQ graph runs INT8 kernels only when ORT fuses it, see
:func:`edgekd.runtime.precision.onnx_executed_precision`), never from the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, DeployOption, Session, SessionOptions
from edgekd.backends.profile_options import OrtProfile
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable
from edgekd.runtime.onnxruntime_open import OrtSettings, open_ort, ort_input
from edgekd.runtime.precision import onnx_executed_precision, onnx_model_is_int8

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# Device -> providers in priority order. TensorRT hands the nodes it cannot build to CUDA.
_PROVIDERS = {
    "CPU": ["CPUExecutionProvider"],
    "CUDA": ["CUDAExecutionProvider"],
    "GPU": ["CUDAExecutionProvider"],
    "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    "TRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}
_EXECUTION_MODES = ("sequential", "parallel")


class OrtSession(Session):
    backend = "onnxruntime"

    def __init__(self, session: Any, *, artifact: Path, options: SessionOptions, executed: str) -> None:
        try:
            spec = ort_input(session, artifact.name)
        except ValueError as exc:
            raise InputFileError(str(exc), hint="export a single float32 input model") from None
        self._session = session
        self._input_name = spec.name
        self._output_names = [spec.output]
        # An fp16-I/O model gets its input cast here, inside the timed call, as a deployment would.
        self._cast = spec.cast
        super().__init__(
            artifact=artifact,
            input_shape=spec.shape,
            requested_precision=options.precision,
            executed_precision=executed,
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._cast is not None:
            x = x.astype(self._cast)
        return self._session.run(self._output_names, {self._input_name: x})[0]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime_module = "onnxruntime"
    suffixes = (".onnx",)
    profile_section = OrtProfile
    devices = ("CPU", "GPU", "CUDA")
    device_pattern = r"^(CPU|CUDA|GPU|TENSORRT|TRT)$"
    remote = True
    deploy = (
        DeployOption("fp32", "onnx", "fp32", 1),
        DeployOption("int8-u8", "ort-int8", "int8", 4, activation_type="uint8"),
        DeployOption("int8-s8", "ort-int8", "int8", 4, activation_type="int8"),
    )

    def _load(self, path: Path, options: SessionOptions) -> Session:
        settings = resolve_ort_options(options)
        try:
            session = open_ort(path, settings)
        except LookupError as exc:
            raise RuntimeUnavailable(f"{exc} (device {options.device!r})") from None
        except Exception as exc:  # ORT raises its own classes (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            first = first if len(first) <= 300 else first[:297] + "..."
            raise InputFileError(
                f"{path} is not a loadable ONNX model: {first}", hint="re-export the model"
            ) from None
        # What the session options make ORT compute in, not just what ops the graph holds.
        return OrtSession(
            session, artifact=path, options=options, executed=onnx_executed_precision(path, settings)
        )

    def remote_settings(self, options: SessionOptions) -> dict[str, Any]:
        return resolve_ort_options(options).to_json()

    def artifact_precision(self, path: Path) -> str:
        """The file's label: int8 when its activations are quantized (Q/DQ or integer ops; a
        weight-only graph is not), else fp32."""
        from edgekd.export.onnx_graph import load_onnx_checked

        return "int8" if onnx_model_is_int8(load_onnx_checked(path)) else "fp32"


def resolve_ort_options(options: SessionOptions) -> OrtSettings:
    """The typed session settings ``options`` make (``to_json()`` ships them to a device runner).

    Defaults: sequential execution, ORT_ENABLE_ALL, ``options.threads`` intra-op threads
    (inter-op: 1 when sequential, ``threads`` when parallel). Known ``options.extra`` keys:
    ``execution_mode`` (sequential|parallel),
    ``graph_optimization_level`` (disable|basic|extended|all), ``inter_op_num_threads``;
    any other key becomes a session config entry (e.g. ``session.intra_op.allow_spinning``).
    ``providers`` follows ``options.device``: CPU, CUDA (or GPU), TENSORRT (or TRT).

    Raises:
        ConfigError: an unknown device, execution mode or optimization level, or a bad count.
    """
    providers = _PROVIDERS.get(options.device.upper())
    if providers is None:
        raise ConfigError(
            f"onnxruntime has no device {options.device!r}", hint=f"use one of {', '.join(_PROVIDERS)}"
        )
    resolved: dict[str, Any] = {
        "providers": tuple(providers),
        "execution_mode": "sequential",
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "intra_op_threads": options.threads or 0,
        "inter_op_threads": 0,
        "config_entries": {},
    }
    for key, value in options.extra.items():
        text = str(value).lower()
        if key == "graph_optimization_level":
            if text not in _OPT_LEVELS:
                raise ConfigError(
                    f"onnxruntime graph_optimization_level {value!r} is unknown",
                    hint=f"use one of {', '.join(_OPT_LEVELS)}",
                )
            resolved[key] = _OPT_LEVELS[text]
        elif key == "execution_mode":
            if text not in _EXECUTION_MODES:
                raise ConfigError(
                    f"onnxruntime execution_mode {value!r} is unknown",
                    hint=f"use one of {', '.join(_EXECUTION_MODES)}",
                )
            resolved[key] = text
        elif key == "inter_op_num_threads":
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(
                    f"onnxruntime inter_op_num_threads must be a positive integer, got {value!r}"
                )
            resolved["inter_op_threads"] = int(text)
        else:
            resolved["config_entries"][str(key)] = str(value)
    if options.threads is not None and not resolved["inter_op_threads"]:
        # Sequential: one inter-op thread is all it uses. Parallel: ORT runs a one-thread
        # inter-op pool sequentially, so give it as many threads as the intra-op pool.
        resolved["inter_op_threads"] = 1 if resolved["execution_mode"] == "sequential" else options.threads
    return OrtSettings(**resolved)


BACKENDS.register("onnxruntime", OnnxRuntimeBackend())
