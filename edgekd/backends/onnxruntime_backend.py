"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider (CPU by default).

Sessions run sequentially with full graph optimisation unless ``options.extra`` says
otherwise (see :func:`resolve_ort_options`), so latency reflects one
request on ``threads`` intra-op threads. The executed precision comes from the graph
AND the session settings (a Q/DQ graph runs INT8 kernels only when ORT fuses it, see
:func:`edgekd.backends.precision.onnx_executed_precision`), never from the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, Session, SessionOptions
from edgekd.backends.precision import onnx_executed_precision
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable
from edgekd.remote.device_runner import ort_session_options

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
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise InputFileError(
                f"{artifact.name} has {len(inputs)} inputs ({names}); edgekd feeds exactly one"
            )
        spec = inputs[0]
        if spec.type not in ("tensor(float)", "tensor(float16)"):
            raise InputFileError(
                f"{artifact.name} input {spec.name!r} is {spec.type}; edgekd feeds float32 frames"
            )
        self._session = session
        self._input_name = spec.name
        self._output_names = [session.get_outputs()[0].name]
        # An fp16-I/O model gets its input cast here, inside the timed call, as a deployment would.
        self._cast = np.float16 if spec.type == "tensor(float16)" else None
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)
        super().__init__(
            artifact=artifact,
            input_shape=shape,
            requested_precision=options.precision,
            executed_precision=executed,
        )

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._cast is not None:
            x = x.astype(self._cast)
        return self._session.run(self._output_names, {self._input_name: x})[0]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)

    def _probe(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc}): pip install onnxruntime"
        return None

    def _load(self, path: Path, options: SessionOptions) -> Session:
        import onnxruntime as ort

        resolved = resolve_ort_options(options)
        providers = resolved["providers"]
        if providers[0] not in ort.get_available_providers():
            raise RuntimeUnavailable(
                f"onnxruntime has no {providers[0]} for device {options.device!r} here; "
                f"available: {', '.join(ort.get_available_providers())}"
            )
        so = ort_session_options(ort, resolved)
        try:
            session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
            # What the session options make ORT compute in, not just what ops the graph holds.
            executed = onnx_executed_precision(path, resolved)
        except Exception as exc:  # ORT raises its own classes (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            first = first if len(first) <= 300 else first[:297] + "..."
            raise InputFileError(
                f"{path} is not a loadable ONNX model: {first}", hint="re-export the model"
            ) from None
        return OrtSession(session, artifact=path, options=options, executed=executed)


def resolve_ort_options(options: SessionOptions) -> dict[str, Any]:
    """Plain-data session settings (JSON-ready, also shipped to a remote device runner).

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
        "providers": list(providers),
        "execution_mode": "sequential",
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "intra_op_num_threads": options.threads or 0,
        "inter_op_num_threads": 0,
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
            resolved[key] = int(text)
        else:
            resolved["config_entries"][str(key)] = str(value)
    if options.threads is not None and not resolved["inter_op_num_threads"]:
        # Sequential: one inter-op thread is all it uses. Parallel: ORT runs a one-thread
        # inter-op pool sequentially, so give it as many threads as the intra-op pool.
        resolved["inter_op_num_threads"] = (
            1 if resolved["execution_mode"] == "sequential" else options.threads
        )
    return resolved


def _session_options(ort: Any, options: SessionOptions) -> Any:
    """``onnxruntime.SessionOptions`` for ``options`` (see :func:`resolve_ort_options`)."""
    return ort_session_options(ort, resolve_ort_options(options))


BACKENDS.register("onnxruntime", OnnxRuntimeBackend())
