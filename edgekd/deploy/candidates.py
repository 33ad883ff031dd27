"""Which candidates a target can run, on this machine, and the reason for each one that cannot.

A candidate is a runtime, a precision and the artifact recipe it needs (``build``). The
catalogue is the union of the registered backends' ``deploy`` options
(:class:`edgekd.backends.base.DeployOption`), in order of simplicity: an eager PyTorch
model needs nothing, an FP32 export one conversion, a reduced-precision float run a
hardware feature, an INT8 model calibration data and an accuracy risk. The selection rule
(:mod:`edgekd.deploy.choose`) keeps a more complex candidate only when it is measurably faster
than a simpler one, so ``complexity`` is part of the rule, not decoration. A backend registered
from your own module with ``deploy`` options, ``devices`` and ``remote`` joins the plan with no
edit here.

Nothing here is faked: a runtime that is not installed, a precision the CPU does not execute
(checked through OpenVINO's ``OPTIMIZATION_CAPABILITIES``) or a runtime that cannot run on
the target's device is kept in the plan as "skipped" with its one-line reason.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable

import edgekd.backends  # noqa: F401  (registers the built-in backends)
from edgekd.backends.base import BACKENDS
from edgekd.errors import ConfigError
from edgekd.registry import suggestion
from edgekd.targets import TargetProfile


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


def catalogue() -> tuple[CandidateSpec, ...]:
    """Every registered backend's deploy options, simplest first (ties in registry order)."""
    specs = [
        CandidateSpec(name, **dataclasses.asdict(opt))
        for name in BACKENDS
        for opt in BACKENDS.get(name).deploy
    ]
    return tuple(sorted(specs, key=lambda spec: spec.complexity))


def device_runtimes(device: str) -> tuple[str, ...]:
    """Registered runtimes that run on the device family ``device`` (CPU, GPU, CUDA, NPU)."""
    return tuple(name for name in BACKENDS if device in BACKENDS.get(name).devices)


def remote_runtimes() -> tuple[str, ...]:
    """Registered runtimes the standalone device runner opens over SSH."""
    return tuple(name for name in BACKENDS if BACKENDS.get(name).remote)


@dataclasses.dataclass
class PlannedCandidate:
    """A catalogue entry for one deploy run: ``skip_reason`` is None when it will be built."""

    spec: CandidateSpec
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id


@functools.cache
def openvino_capabilities(device: str) -> tuple[str, ...] | None:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of ``device`` here (e.g. FP32, INT8, BF16), or None
    when OpenVINO is missing or the device is absent."""
    try:
        import openvino as ov

        return tuple(str(c) for c in ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # ImportError, or RuntimeError for a device that is not present
        return None


def runtime_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here (not installed, no device), or None."""
    reason = BACKENDS.get(backend).unavailable_reason()
    if reason is None:
        return None
    prefix = "runtime not installed" if "not installed" in reason else "runtime unavailable"
    return f"{prefix}: {reason}"


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


@dataclasses.dataclass(frozen=True)
class _Context:
    """What decides every candidate of one plan."""

    target: TargetProfile
    chosen: frozenset[str] | None
    allowed: frozenset[str]
    remote: bool
    student_is_onnx: bool
    buildable: frozenset[str]
    runtime_reason: Callable[[str], str | None]


def _skip_reason(spec: CandidateSpec, ctx: _Context) -> str | None:
    """The first reason ``spec`` cannot be built and measured for this plan, or None."""
    if ctx.chosen is not None and spec.backend not in ctx.chosen:
        return f"not among the requested runtimes ({', '.join(sorted(ctx.chosen))})"
    if spec.backend not in ctx.allowed:
        return f"{spec.backend} does not run on the target's device {ctx.target.device}"
    if spec.build == "student" and ctx.student_is_onnx:
        return "no PyTorch model: the student was given as ONNX"
    if ctx.remote and not BACKENDS.get(spec.backend).remote:
        return (
            f"{spec.backend} does not run on a device over SSH "
            f"(the SSH device runner opens {', '.join(remote_runtimes())})"
        )
    reason = ctx.runtime_reason(spec.backend)
    if reason is None and spec.build not in ctx.buildable:
        # A candidate deploy cannot build through the shared flow is reported, not approximated.
        reason = (
            f"{spec.backend} runs here, but deploy does not build {spec.build} artifacts yet "
            "(use edgekd export and edgekd bench)"
        )
    return reason or _float_precision_reason(spec, ctx.target.device, ctx.remote)


def plan_candidates(
    target: TargetProfile,
    *,
    host: str,
    student_is_onnx: bool,
    runtimes: Iterable[str] | None = None,
    runtime_reason: Callable[[str], str | None] = runtime_reason,
) -> list[PlannedCandidate]:
    """Every catalogue entry, each either planned (``skip_reason`` None) or skipped with its reason.

    Args:
        target: the profile; its ``device`` decides the runtimes (see :func:`device_runtimes`).
        host: "local" or ``ssh://...`` (only :func:`remote_runtimes` run on a device over SSH).
        student_is_onnx: the student was given as ONNX, so there is no PyTorch model to run.
        runtimes: restrict to these runtimes (None: all the device allows).
        runtime_reason: ``backend -> reason it is unavailable or None`` (tests substitute one).
    """
    from edgekd.deploy.build import RECIPES  # build imports this module: the recipes it has

    specs = catalogue()
    chosen = frozenset(runtimes) if runtimes is not None else None
    known = {spec.backend for spec in specs}
    unknown = sorted((chosen or set()) - known)
    if unknown:
        raise ConfigError(
            f"unknown runtime(s) {', '.join(unknown)}", hint=suggestion(unknown[0], sorted(known), "runtimes")
        )
    device = target.device.upper().split(":")[0].split(".")[0]
    ctx = _Context(
        target=target,
        chosen=chosen,
        allowed=frozenset({*device_runtimes(device), target.runtime}),
        remote=host != "local",
        student_is_onnx=student_is_onnx,
        buildable=frozenset(RECIPES),
        runtime_reason=runtime_reason,
    )
    return [PlannedCandidate(spec, _skip_reason(spec, ctx)) for spec in specs]
