"""OpenVINO backend: reads an IR (``.xml`` + ``.bin``) or an ``.onnx`` file.

Compiled for latency by default (PERFORMANCE_HINT=LATENCY, NUM_STREAMS=1) with the
requested INFERENCE_PRECISION_HINT. The plugin may ignore a hint the CPU cannot
honour (bf16 without AVX512_BF16/AMX), so the executed precision is read back from
the compiled model rather than trusted (see
:func:`edgekd.runtime.openvino_open.ov_executed_precision`, the same code on a device).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, DeployOption, Session, SessionOptions
from edgekd.backends.profile_options import OpenVinoProfile
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.runtime.inputs import first_line
from edgekd.runtime.openvino_open import (
    OvSettings,
    check_ov_inputs,
    compile_ov,
    new_core,
    ov_executed_precision,
    ov_request_runner,
)
from edgekd.runtime.precision import openvino_ir_is_int8

# Requested precision -> INFERENCE_PRECISION_HINT. "int8" pins the layers a quantized IR leaves
# in float to f32 (as onnxruntime does), so int8 and fp32 entries differ only by quantization.
_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32", "auto": None}
_VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")


def _first_line(exc: BaseException) -> str:
    """The runtime's message without its exception type (OpenVINO's are all RuntimeError)."""
    return first_line(exc).partition(": ")[2] or type(exc).__name__


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
            return compile_ov(model, OvSettings(self._device, self._config), self._core)
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
    runtime_module = "openvino"
    suffixes = (".xml", ".onnx")
    profile_section = OpenVinoProfile
    devices = ("CPU", "NPU")
    device_pattern = r"^((CPU|GPU|NPU)(\.[0-9]{1,2})?|(AUTO|HETERO|MULTI|BATCH)(:[A-Z0-9.,]+)?)$"
    remote = True
    deploy = (
        DeployOption("fp32", "openvino-ir", "fp32", 2),
        DeployOption("fp16", "openvino-ir", "fp16", 3),
        DeployOption("bf16", "openvino-ir", "bf16", 3),
        DeployOption("int8", "openvino-int8", "int8", 5),
    )

    def __init__(self) -> None:
        super().__init__()
        self._core: Any = None

    def core(self) -> Any:
        if self._core is None:
            self._core = new_core()
        return self._core

    def remote_settings(self, options: SessionOptions) -> dict[str, Any]:
        device = options.device.upper()
        return OvSettings(device, compile_config(device, options)).to_json()

    def artifact_entry(self, path: Path) -> str | None:
        """Only an IR is OpenVINO's by default; an .onnx file is ONNX Runtime's unless named."""
        if path.suffix.lower() != ".xml":
            return None
        try:
            return "openvino/int8" if openvino_ir_is_int8(path) else "openvino/fp32"
        except ValueError as exc:
            raise InputFileError(str(exc), hint="re-export the model") from None

    def _load(self, path: Path, options: SessionOptions) -> Session:
        core = self.core()
        device = options.device.upper()
        _check_device(device, list(core.available_devices))
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            raise InputFileError(
                f"OpenVINO IR {path} has no weights file {path.with_suffix('.bin').name}",
                hint="keep the .xml and .bin side by side",
            )
        _precheck(path)
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise InputFileError(
                f"{path} is not a readable OpenVINO model: {_first_line(exc)}", hint="re-export the model"
            ) from None
        try:
            check_ov_inputs(model, str(path))
        except ValueError as exc:
            raise InputFileError(str(exc), hint="export a single float32 input model") from None
        return OpenVinoSession(
            core, model, artifact=path, device=device, config=compile_config(device, options), options=options
        )


def _precheck(path: Path) -> None:
    """InputFileError unless ``path`` is an ONNX protobuf of released opsets or an IR whose
    root is <net>.

    Given a file none of its frontends claims, ``Core.read_model`` lets every frontend try,
    and the TensorFlow one prints its own parse errors on stderr: the check comes first so a
    broken file is one line of ours.
    """
    if path.suffix.lower() == ".onnx":
        import onnx

        from edgekd.export.onnx_graph import load_onnx_checked

        model = load_onnx_checked(path, check=False, load_external_data=False)
        newest = onnx.defs.onnx_opset_version()
        for opset in model.opset_import:
            # OpenVINO reads an opset from the future as its newest one: refuse it, as ORT does.
            if opset.domain in ("", "ai.onnx") and opset.version > newest:
                raise InputFileError(
                    f"{path} declares ONNX opset {opset.version}; the newest opset is {newest}",
                    hint="re-export the model with a released opset",
                )
        return
    try:
        _event, root = next(ET.iterparse(str(path), events=("start",)))
    except (ET.ParseError, StopIteration) as exc:
        raise InputFileError(
            f"{path} is not an OpenVINO IR (not XML: {exc})", hint="pass the .xml written by edgekd export"
        ) from None
    if root.tag != "net":
        raise InputFileError(
            f"{path} is not an OpenVINO IR (its root element is <{root.tag}>, not <net>)",
            hint="pass the .xml written by edgekd export",
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
