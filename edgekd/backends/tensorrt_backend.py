"""TensorRT backend: runs a serialized engine (``.engine``/``.plan``) on the CUDA GPU.

Written against the TensorRT 10/11 tensor API: ``num_io_tensors``/``get_tensor_name``,
``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3`` on a CUDA stream
(the binding-index API was removed in TensorRT 10). Device buffers and the stream come
from PyTorch's CUDA allocator, which edgekd already depends on, so no pycuda or
cuda-python is needed.

An engine is tied to the TensorRT version and the GPU it was built for; deserializing one
from elsewhere fails, and that is reported as an unloadable artifact with the reason. An
engine with a manifest (every engine edgekd writes) is deserialized only when its bytes hash
to the sha256 the manifest records, and never with embedded host code allowed.

The executed precision is read from the engine itself: engines built by edgekd keep
detailed layer information (``ProfilingVerbosity.DETAILED``), and the engine inspector's
per-layer tensor formats say whether layers run in Int8, Half or Float. For an engine
without that information the precision recorded in its build manifest is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, DeployOption, Session, SessionOptions
from edgekd.errors import InputFileError


def precision_from_layer_info(info: str) -> str | None:
    """The lowest precision any layer computes in, from the inspector's JSON; None if unknown.

    Each layer lists its input/output tensors with a ``Format/Datatype`` string such as
    "Int8 NC/32HW32", "Half NCHW" or "Float NCHW"; reformatting layers are skipped, since
    they only convert between the layers that compute.
    """
    try:
        layers = json.loads(info).get("Layers", [])
    except (ValueError, AttributeError):
        return None
    seen: set[str] = set()
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("LayerType") == "Reformat":
            continue
        for tensor in [*layer.get("Inputs", []), *layer.get("Outputs", [])]:
            fmt = str(tensor.get("Format/Datatype", "")) if isinstance(tensor, dict) else ""
            for label, name in (("Int8", "int8"), ("FP8", "fp8"), ("Half", "fp16"), ("BFloat16", "bf16")):
                if fmt.startswith(label):
                    seen.add(name)
            if fmt.startswith("Float"):
                seen.add("fp32")
    for name in ("int8", "fp8", "fp16", "bf16", "fp32"):
        if name in seen:
            return name
    return None


class TensorRTSession(Session):
    backend = "tensorrt"

    def __init__(self, path: Path, engine: Any, trt: Any, torch: Any, precision: str) -> None:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise InputFileError(
                f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs",
                hint="edgekd benches single-input classifiers (one input, logits first)",
            )
        self._input, self._output = inputs[0], outputs[0]
        # A dynamic batch shows as -1 in the engine's input shape; the profile bounds it.
        shape = tuple(int(d) for d in engine.get_tensor_shape(self._input))
        super().__init__(
            artifact=path,
            input_shape=tuple(None if d < 0 else d for d in shape),
            requested_precision="auto",
            executed_precision=precision,
        )
        self._engine, self._trt, self._torch = engine, trt, torch
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self._buffers: tuple[Any, Any] | None = None
        self._batch: int | None = None

    def _bind(self, x: np.ndarray) -> None:
        """Allocate device buffers for this batch and point the context at them."""
        torch = self._torch
        if not self._context.set_input_shape(self._input, tuple(x.shape)):
            raise InputFileError(
                f"the engine's optimization profile does not take input {list(x.shape)}",
                hint="rebuild with tensorrt.max_batch covering this batch",
            )
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self._output))
        device_in = torch.empty(x.shape, dtype=torch.float32, device="cuda")
        device_out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self._context.set_tensor_address(self._input, device_in.data_ptr())
        self._context.set_tensor_address(self._output, device_out.data_ptr())
        self._buffers, self._batch = (device_in, device_out), x.shape[0]

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._buffers is None or self._batch != x.shape[0]:
            self._bind(x)
        device_in, device_out = self._buffers
        # Host -> device, execute, device -> host, all on one stream; the copy back waits.
        with self._torch.cuda.stream(self._stream):
            device_in.copy_(self._torch.from_numpy(x), non_blocking=False)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed; TensorRT's log has the cause")
            result = device_out.cpu()
        return result.numpy()


class TensorRTBackend(Backend):
    name = "tensorrt"
    suffixes = (".engine", ".plan", ".trt")
    precisions = ("fp32", "fp16", "int8", "auto")
    devices = ("GPU", "CUDA")
    device_pattern = r"^(GPU|CUDA)(:[0-9]{1,2})?$"
    deploy = (
        DeployOption("fp16", "tensorrt-engine", "fp16", 3),
        DeployOption("int8", "tensorrt-engine", "int8", 5),
    )

    def _probe(self) -> str | None:
        from edgekd.export.tensorrt.builder import tensorrt_unavailable_reason

        return tensorrt_unavailable_reason()

    def artifact_precision(self, path: Path) -> str:
        """The precision the engine was built for, from its export manifest (fp16 if unknown)."""
        built = _manifest_precision(path)
        return built if built in ("fp32", "fp16", "int8") else "fp16"

    def _load(self, path: Path, options: SessionOptions) -> Session:
        from edgekd.export.tensorrt.engine_cache import verify_engine_bytes

        # Read once, check those very bytes against the manifest's sha256, deserialize them.
        data = path.read_bytes()
        verify_engine_bytes(path, data)
        import tensorrt as trt
        import torch

        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = False  # an engine may not carry host code to run
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise InputFileError(
                f"TensorRT {trt.__version__} cannot load {path.name}",
                hint="an engine is tied to its TensorRT version and GPU: "
                "rebuild it here with edgekd export --tensorrt",
            )
        inspector = engine.create_engine_inspector()
        precision = precision_from_layer_info(
            inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        )
        if precision is None:  # built without detailed layer information: the build manifest's label
            recorded = _manifest_precision(path)
            precision = recorded if recorded in ("fp32", "fp16", "bf16", "fp8", "int8") else "fp32"
        return TensorRTSession(path, engine, trt, torch, precision)


def _manifest_precision(path: Path) -> Any:
    """The ``metrics.precision`` an engine's build manifest records, None without one."""
    from edgekd.artifacts import read_manifest

    manifest = read_manifest(path, required=False)
    metrics = manifest.get("metrics") if isinstance(manifest, dict) else None
    return metrics.get("precision") if isinstance(metrics, dict) else None


BACKENDS.register("tensorrt", TensorRTBackend())
