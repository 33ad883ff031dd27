"""OpenVINO backend: reads an IR (``.xml`` + ``.bin``) or an ``.onnx`` file.

Compiled for latency by default (PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1) with the
requested INFERENCE_PRECISION_HINT. The plugin may ignore a hint the CPU cannot
honour (bf16 without AVX512_BF16/AMX), so the executed precision is read back from
the compiled model rather than trusted (see :func:`ov_executed_precision`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, Session, SessionOptions
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.remote.device_runner import ov_request_runner

# Requested precision -> INFERENCE_PRECISION_HINT. "int8" pins the layers a quantized IR leaves
# in float to f32 (as onnxruntime does), so int8 and fp32 entries differ only by quantization.
_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32", "auto": None}
_LABELS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
# Runtime-graph layer types that carry the arithmetic; their runtimePrecision says what executes.
_COMPUTE_LAYERS = frozenset(
    {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}
)
_VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__


def _rt(op: Any, key: str) -> str | None:
    info = op.get_rt_info()
    return info[key].astype(str) if key in info else None


def ov_executed_precision(compiled: Any, model: Any) -> str:
    """What the compiled model computes in.

    "int8" when a compute layer of the plugin's runtime graph runs in i8/u8 (the
    FakeQuantize/QDQ of the IR was fused into integer kernels), or when the IR holds
    FakeQuantize and the runtime graph cannot be read. An IR whose FakeQuantize the
    plugin only emulates in float reports the float precision. Otherwise the read-back
    INFERENCE_PRECISION_HINT: f32 -> "fp32", bf16 -> "bf16", f16 -> "fp16".
    """
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    float_label = _LABELS.get(name, name)
    has_fake_quant = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    try:
        runtime_ops = compiled.get_runtime_model().get_ops()
        int8_compute = any(
            _rt(op, "layerType") in _COMPUTE_LAYERS and _rt(op, "runtimePrecision") in ("i8", "u8")
            for op in runtime_ops
        )
    except RuntimeError:  # plugins other than CPU/GPU may not expose a runtime graph
        return "int8" if has_fake_quant else float_label
    return "int8" if int8_compute else float_label


class OpenVinoSession(Session):
    backend = "openvino"

    def __init__(
        self,
        core: Any,
        model: Any,
        *,
        artifact: Path,
        device: str,
        config: dict[str, str],
        options: SessionOptions,
    ) -> None:
        import openvino as ov

        self.artifact = artifact  # set early: _compile names it in errors
        self._core, self._device, self._config = core, device, config
        partial = model.input(0).get_partial_shape()
        shape = tuple(d.get_length() if d.is_static else None for d in partial)
        self._compiled = self._compile(model)
        self._request = self._compiled.create_infer_request()
        self._infer = ov_request_runner(self._request)
        self._last: Any = None  # the runner of the last call (static or batch-dynamic request)
        self._static_batch = shape[0] if shape else None
        self._dynamic_model: Any = None
        self._dynamic_infer: Any = None
        if self._static_batch is not None:
            # Prepare a batch-dynamic twin now (cheap, no compile) so the session can take any
            # batch; it is compiled on first use, keeping the static compile for batch 1.
            try:
                twin = model.clone()
                twin.reshape({twin.input(0): ov.PartialShape([-1, *partial[1:]])})
                self._dynamic_model = twin
                shape = (None, *shape[1:])
            except RuntimeError:
                pass  # e.g. a Reshape with a hard-coded batch: the session keeps its static batch
        super().__init__(
            artifact=artifact,
            input_shape=shape,
            requested_precision=options.precision,
            executed_precision=ov_executed_precision(self._compiled, model),
        )

    def _compile(self, model: Any) -> Any:
        try:
            return self._core.compile_model(model, self._device, self._config)
        except RuntimeError as exc:
            raise ConfigError(
                f"openvino could not compile {self.artifact or 'the model'} for {self._device} "
                f"with {self._config}: {_first_line(exc)}",
                hint="check options.extra and the device",
            ) from None

    def runtime_ms(self) -> float:
        """OpenVINO's own timing of the last call (ms), as benchmark_app reports it."""
        return (self._last or self._infer).runtime_ms()

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._static_batch is None or x.shape[0] == self._static_batch:
            self._last = self._infer
            return self._infer(x)
        if self._dynamic_infer is None:
            if self._dynamic_model is None:
                raise ShapeError(f"openvino model {self.artifact} takes batch {self._static_batch} only")
            self._dynamic_infer = ov_request_runner(self._compile(self._dynamic_model).create_infer_request())
        self._last = self._dynamic_infer
        return self._dynamic_infer(x)


class OpenVinoBackend(Backend):
    name = "openvino"
    suffixes = (".xml", ".onnx")

    def __init__(self) -> None:
        super().__init__()
        self._core: Any = None

    def _probe(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            return f"openvino is not installed ({exc}): pip install openvino"
        return None

    def core(self) -> Any:
        if self._core is None:
            import openvino as ov

            self._core = ov.Core()
        return self._core

    def _load(self, path: Path, options: SessionOptions) -> Session:
        core = self.core()
        device = options.device.upper()
        _check_device(device, list(core.available_devices))
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise InputFileError(
                f"OpenVINO IR {path} has no weights file {path.with_suffix('.bin').name}",
                hint="keep the .xml and .bin side by side",
            )
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise InputFileError(
                f"{path} is not a readable OpenVINO model: {_first_line(exc)}", hint="re-export the model"
            ) from None
        if len(model.inputs) != 1:
            raise InputFileError(f"{path.name} has {len(model.inputs)} inputs; edgekd feeds exactly one")
        return OpenVinoSession(
            core, model, artifact=path, device=device, config=compile_config(device, options), options=options
        )


def compile_config(device: str, options: SessionOptions) -> dict[str, str]:
    """Compile properties: latency hint, one stream, precision hint, threads (CPU only);
    ``options.extra`` is applied last so it may override any of them."""
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    hint = _HINTS[options.precision]
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    if options.threads is not None and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = str(options.threads)
    config.update({str(k): str(v) for k, v in options.extra.items()})
    return config


def _check_device(device: str, available: list[str]) -> None:
    if device.split(":")[0] in _VIRTUAL_DEVICES:
        return
    families = {d.split(".")[0] for d in available}
    if device not in available and device.split(".")[0] not in families:
        raise RuntimeUnavailable(
            f"OpenVINO device {device!r} is not present here; available: {', '.join(available)}"
        )


BACKENDS.register("openvino", OpenVinoBackend())
