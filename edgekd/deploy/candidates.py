"""Which candidates a target can run, on this machine, and the reason for each one that cannot.

A candidate is a runtime, a precision and the artifact recipe it needs (``build``). The
catalogue below lists every pair edgekd knows, in order of simplicity: an eager PyTorch
model needs nothing, an FP32 export one conversion, a reduced-precision float run a
hardware feature, an INT8 model calibration data and an accuracy risk. The selection rule
(:mod:`edgekd.deploy.choose`) keeps a more complex candidate only when it is measurably faster
than a simpler one, so ``complexity`` is part of the rule, not decoration.

Nothing here is faked: a runtime that is not installed, a precision the CPU does not execute
(checked through OpenVINO's ``OPTIMIZATION_CAPABILITIES``) or a runtime that cannot run on
the target's device is kept in the plan as "skipped" with its one-line reason.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable

from edgekd.errors import ConfigError
from edgekd.targets import TargetProfile

#: Runtimes that can run on each target device family. A target's own ``runtime`` is always added.
DEVICE_RUNTIMES: dict[str, tuple[str, ...]] = {
    "CPU": ("torch", "onnxruntime", "openvino", "tensorrt"),
    "GPU": ("onnxruntime", "tensorrt"),
    "CUDA": ("onnxruntime", "tensorrt"),
    "NPU": ("openvino",),
}
#: Runtimes the SSH device runner can open (edgekd/remote/device_runner.py).
REMOTE_RUNTIMES = ("onnxruntime", "openvino")


@dataclasses.dataclass(frozen=True)
class CandidateSpec:
    """One runtime/precision pair.

    ``precision`` is the label shown and recorded (``int8-u8``: INT8 with unsigned
    activations); ``session_precision`` the :class:`~edgekd.backends.SessionOptions`
    precision it is opened with; ``build`` the artifact recipe (see
    :mod:`edgekd.deploy.build`); ``complexity`` orders candidates from simplest (0) up;
    ``activation_type`` the INT8 activation type of an ONNX Runtime QDQ build.
    """

    backend: str
    precision: str
    build: str
    session_precision: str
    complexity: int
    activation_type: str | None = None

    @property
    def id(self) -> str:
        return f"{self.backend}/{self.precision}"


CATALOGUE: tuple[CandidateSpec, ...] = (
    CandidateSpec("torch", "fp32", "student", "fp32", 0),
    CandidateSpec("onnxruntime", "fp32", "onnx", "fp32", 1),
    CandidateSpec("openvino", "fp32", "openvino-ir", "fp32", 2),
    CandidateSpec("openvino", "fp16", "openvino-ir", "fp16", 3),
    CandidateSpec("openvino", "bf16", "openvino-ir", "bf16", 3),
    CandidateSpec("tensorrt", "fp16", "tensorrt-engine", "fp16", 3),
    CandidateSpec("onnxruntime", "int8-u8", "ort-int8", "int8", 4, activation_type="uint8"),
    CandidateSpec("onnxruntime", "int8-s8", "ort-int8", "int8", 4, activation_type="int8"),
    CandidateSpec("openvino", "int8", "openvino-int8", "int8", 5),
    CandidateSpec("tensorrt", "int8", "tensorrt-engine", "int8", 5),
)


@dataclasses.dataclass
class PlannedCandidate:
    """A catalogue entry for one deploy run: ``skip_reason`` is None when it will be built."""

    spec: CandidateSpec
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id


def tensorrt_reason() -> str | None:
    """Why TensorRT candidates cannot run here: not installed, no CUDA GPU, or not wired in yet."""
    import edgekd.backends  # noqa: F401  (registers the built-in backends)
    from edgekd.backends.base import BACKENDS

    if "tensorrt" in BACKENDS:
        reason = BACKENDS.get("tensorrt").unavailable_reason()
    else:
        try:
            import tensorrt  # noqa: F401

            reason = None
        except ImportError as exc:
            reason = f"tensorrt is not installed ({exc}; pip install 'edgekd[tensorrt]', NVIDIA GPU)"
    if reason is not None:
        prefix = "runtime not installed" if "not installed" in reason else "runtime unavailable"
        return f"{prefix}: {reason}"
    # TensorRT runs here, but deploy does not build engines yet: a candidate it cannot build
    # through the shared flow is reported, not approximated.
    return "TensorRT runs here, but deploy does not build engines yet (use edgekd export and edgekd bench)"


@functools.cache
def openvino_capabilities(device: str) -> tuple[str, ...] | None:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of ``device`` here (e.g. FP32, INT8, BF16), or None
    when OpenVINO is missing or the device is absent."""
    try:
        import openvino as ov

        return tuple(str(c) for c in ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # ImportError, or RuntimeError for a device that is not present
        return None


def _runtime_reason(backend: str) -> str | None:
    if backend == "tensorrt":
        return tensorrt_reason()
    import edgekd.backends  # noqa: F401  (registers the built-in backends)
    from edgekd.backends.base import BACKENDS

    reason = BACKENDS.get(backend).unavailable_reason()
    return None if reason is None else f"runtime not installed: {reason}"


def _float_precision_reason(spec: CandidateSpec, device: str, remote: bool) -> str | None:
    """OpenVINO fp16/bf16 only where the device executes it (the plugin would silently run fp32)."""
    if spec.backend != "openvino" or spec.session_precision not in ("fp16", "bf16") or remote:
        return None  # a remote device's executed precision is read back after the run instead
    caps = openvino_capabilities(device)
    if caps is None:
        return f"OpenVINO device {device} is not present here"
    wanted = spec.session_precision.upper()
    if wanted not in caps:
        return f"not supported here: {device} lacks {wanted} (OpenVINO capabilities: {', '.join(caps)})"
    return None


def plan_candidates(
    target: TargetProfile,
    *,
    host: str,
    student_is_onnx: bool,
    runtimes: Iterable[str] | None = None,
    runtime_reason: Callable[[str], str | None] = _runtime_reason,
) -> list[PlannedCandidate]:
    """Every catalogue entry, each either planned (``skip_reason`` None) or skipped with its reason.

    Args:
        target: the profile; its ``device`` decides the runtimes (see :data:`DEVICE_RUNTIMES`).
        host: "local" or ``ssh://...`` (only :data:`REMOTE_RUNTIMES` run on a device over SSH).
        student_is_onnx: the student was given as ONNX, so there is no PyTorch model to run.
        runtimes: restrict to these runtimes (None: all the device allows).
        runtime_reason: ``backend -> reason it is unavailable or None`` (tests substitute one).
    """
    chosen = set(runtimes) if runtimes is not None else None
    known = {spec.backend for spec in CATALOGUE}
    unknown = sorted((chosen or set()) - known)
    if unknown:
        raise ConfigError(
            f"unknown runtime(s) {', '.join(unknown)}", hint=f"choose from {', '.join(sorted(known))}"
        )
    device = target.device.upper().split(":")[0].split(".")[0]
    allowed = {*DEVICE_RUNTIMES.get(device, ()), target.runtime}
    remote = host != "local"
    planned = []
    for spec in CATALOGUE:
        reason = None
        if chosen is not None and spec.backend not in chosen:
            reason = f"not among the requested runtimes ({', '.join(sorted(chosen))})"
        elif spec.backend not in allowed:
            reason = f"{spec.backend} does not run on the target's device {target.device}"
        elif spec.backend == "torch" and student_is_onnx:
            reason = "no PyTorch model: the student was given as ONNX"
        elif remote and spec.backend not in REMOTE_RUNTIMES and spec.backend != "tensorrt":
            reason = (
                f"{spec.backend} does not run on a device over SSH (the runner has onnxruntime, openvino)"
            )
        else:
            reason = runtime_reason(spec.backend)
            if reason is None and remote and spec.backend == "tensorrt":
                reason = "the SSH device runner does not open TensorRT engines"
            if reason is None and spec.backend == "tensorrt" and device == "CPU":
                reason = "TensorRT needs an NVIDIA GPU; the target's device is CPU"
            if reason is None:
                reason = _float_precision_reason(spec, target.device, remote)
        planned.append(PlannedCandidate(spec, reason))
    return planned
