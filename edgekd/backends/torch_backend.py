"""PyTorch backend: eager (the fp32 reference every other runtime is compared with), or
``torch.compile``d, on the CPU or a CUDA GPU.

``.pt`` checkpoints are opened through :func:`edgekd.models.checkpoint.load_checkpoint`
(``weights_only`` loading). :func:`session_from_module` wraps a module already in memory.

``SessionOptions.extra["compile"]``: "none" (eager, the default), or a ``torch.compile``
mode: "default", "reduce-overhead", "max-autotune". Compilation happens on the first call,
so it shows in the bench's first-inference time, not in the steady-state latency. On CUDA
each call synchronises (the output is copied back), so a latency is a whole request.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.backends.base import BACKENDS, Backend, DeployOption, Session, SessionOptions
from edgekd.backends.profile_options import TorchProfile

if TYPE_CHECKING:
    import torch

# Requested precision -> torch dtype name; "auto" keeps the module's own dtype.
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_LABELS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
_DEVICES = {"CPU": "cpu", "CUDA": "cuda", "GPU": "cuda"}


class TorchSession(Session):
    backend = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        artifact: Path | None,
        input_shape: tuple[int | None, ...],
        options: SessionOptions,
    ) -> None:
        import torch

        dtype_name = _DTYPES.get(options.precision)
        if dtype_name is not None and _first_float_dtype(module) not in (None, getattr(torch, dtype_name)):
            # nn.Module.to casts in place: copy so the caller's module keeps its dtype.
            module = copy.deepcopy(module).to(getattr(torch, dtype_name))
        self._device = torch_device(options)
        if self._device.type != "cpu":
            module = copy.deepcopy(module).to(self._device)
        self._module = module.eval()  # safe: nn.Module.eval(), inference mode
        self._call = self._module
        mode = compile_mode(options)
        if mode != "none":
            # dynamic=False: one graph per input shape, as the latency loop feeds one shape.
            self._call = torch.compile(self._module, mode=mode, dynamic=False)
        self._threads = options.threads
        executed = executed_precision(module)
        # Inputs follow the parameters' dtype so a bf16 module is fed bf16 (no silent upcast).
        self._dtype = _first_float_dtype(module) or torch.float32
        super().__init__(
            artifact=artifact,
            input_shape=input_shape,
            requested_precision=options.precision,
            executed_precision=executed,
        )
        self._apply_threads()

    def _apply_threads(self) -> None:
        import torch

        # The thread count is process-wide in torch: re-assert it in case another session changed it.
        if self._threads is not None and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        self._apply_threads()
        with torch.inference_mode():
            tensor = torch.from_numpy(x)
            if tensor.dtype != self._dtype or tensor.device != self._device:
                tensor = tensor.to(self._device, self._dtype)
            out = self._call(tensor)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out.float().cpu().numpy()


def torch_device(options: SessionOptions) -> torch.device:
    """The torch device for ``options.device``: CPU, or CUDA/GPU when a CUDA GPU is present."""
    import torch

    from edgekd.errors import ConfigError, RuntimeUnavailable

    name = _DEVICES.get(options.device.upper())
    if name is None:
        raise ConfigError(f"the torch backend has no device {options.device!r}", hint="use CPU or CUDA")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable("no CUDA GPU: torch.cuda.is_available() is False")
    return torch.device(name)


def compile_mode(options: SessionOptions) -> str:
    """The torch.compile mode ``options.extra`` asks for ("none" = eager); ConfigError if unknown."""
    from edgekd.errors import ConfigError

    mode = options.extra.get("compile", "none")
    if mode not in COMPILE_MODES:
        raise ConfigError(
            f"torch compile mode {mode!r} is unknown", hint=f"use one of {', '.join(COMPILE_MODES)}"
        )
    return mode


def _first_float_dtype(module: torch.nn.Module) -> Any:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def executed_precision(module: torch.nn.Module) -> str:
    """Label of what ``module`` computes in: "int8" when it holds quantized tensors or
    quantized modules (torch.ao), else its floating parameters' dtype ("fp32", "bf16", ...)."""
    for sub in module.modules():
        if ".quantized" in type(sub).__module__:
            return "int8"
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_quantized:
            return "int8"
    dtype = _first_float_dtype(module)
    return _LABELS.get(str(dtype).removeprefix("torch."), "fp32") if dtype is not None else "fp32"


def session_from_module(
    module: torch.nn.Module,
    sample_shape: tuple[int, ...],
    options: SessionOptions | None = None,
    *,
    artifact: Path | None = None,
) -> Session:
    """Wrap an in-memory module as a session with a dynamic batch axis.

    Args:
        module: the network; it is put in eval mode (and cast when ``options.precision``
            is "bf16" or "fp16").
        sample_shape: shape of one sample without the batch axis, e.g. ``(2, 128)``.
        options: threads, precision, device ("CPU" or "CUDA") and ``extra["compile"]``.
    """
    options = options or SessionOptions()
    options.validate()
    torch_device(options)
    compile_mode(options)
    return TorchSession(module, artifact=artifact, input_shape=(None, *sample_shape), options=options)


class TorchBackend(Backend):
    name = "torch"
    runtime_module = "torch"
    suffixes = (".pt", ".pth")
    precisions = ("fp32", "bf16", "fp16", "auto")
    profile_section = TorchProfile
    device_pattern = r"^(CPU|CUDA|GPU)$"
    deploy = (DeployOption("fp32", "student", "fp32", 0),)

    def _load(self, path: Path, options: SessionOptions) -> Session:
        from edgekd.models.checkpoint import load_checkpoint

        torch_device(options)  # a missing GPU or an unknown mode fails before the checkpoint is read
        compile_mode(options)
        module, meta = load_checkpoint(path)
        return session_from_module(module, tuple(meta.input_shape), options, artifact=path)


BACKENDS.register("torch", TorchBackend())
