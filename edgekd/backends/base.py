"""The runtime protocol every backend implements: ``Backend.load(artifact) -> Session``.

Template methods keep the checks in one place (as Polygraphy's runners do): the
public :meth:`Backend.load` checks the artifact and the runtime, then calls the
subclass's ``_load``; the public :meth:`Session.run` checks dtype and shape, then
calls ``_run``. The latency loop and the accuracy evaluator only ever call
``Session.run``, so their numbers are comparable across runtimes.

This module imports numpy only: a runtime (torch, onnxruntime, openvino) is
imported inside the backend's methods, so a missing one is a clear state.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.registry import Registry

#: Precision labels a caller may request; each backend accepts a subset.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")


@dataclasses.dataclass(frozen=True)
class DeployOption:
    """One runtime/precision pair a backend offers ``edgekd deploy``.

    ``precision``: the label shown and recorded (``int8-u8``: INT8 with unsigned activations);
    ``build``: the artifact recipe of :mod:`edgekd.deploy.build` ("student", "onnx",
    "openvino-ir", "ort-int8", "openvino-int8", "tensorrt-engine"); ``session_precision``:
    the :class:`SessionOptions` precision it is opened with; ``complexity``: orders options
    from simplest (0: an eager model) up; ``activation_type``: the INT8 activation type of an
    ONNX Runtime QDQ build ("uint8" or "int8").
    """

    precision: str
    build: str
    session_precision: str
    complexity: int
    activation_type: str | None = None


@dataclasses.dataclass
class SessionOptions:
    """How to open a session.

    ``threads``: intra-op threads (None = the runtime's default).
    ``device``: runtime device name ("CPU"; OpenVINO also "GPU", "NPU", "AUTO").
    ``precision``: the requested precision, one of :data:`PRECISIONS`; "auto" leaves
    the runtime's default. What really executes is reported by
    :attr:`Session.executed_precision`, which may differ.
    ``extra``: runtime-specific string options, e.g. ``{"graph_optimization_level": "basic"}``
    for onnxruntime or ``{"PERFORMANCE_HINT": "THROUGHPUT"}`` for OpenVINO.
    """

    threads: int | None = None
    device: str = "CPU"
    precision: str = "fp32"
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        from edgekd.backends.profile_options import resolve_threads  # it imports this module

        resolve_threads(self.threads, source="threads")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}"
            )


def format_shape(shape: tuple[int | None, ...] | list[int | None]) -> str:
    """``(None, 2, 128)`` -> ``[N, 2, 128]`` (None is a dynamic dimension)."""
    return (
        "["
        + ", ".join(
            "N" if i == 0 and d is None else "?" if d is None else str(d) for i, d in enumerate(shape)
        )
        + "]"
    )


class Session(ABC):
    """An opened model that maps one float32 batch to one output array.

    Attributes:
        backend: registry name of the backend that opened it ("onnxruntime", ...).
        artifact: the model file.
        input_shape: full input shape with the batch axis first; ``None`` marks a dynamic
            dimension, e.g. ``(None, 2, 128)``. A static batch (``(1, 2, 128)``) means the
            session only takes that batch size.
        requested_precision: what the caller asked for (``SessionOptions.precision``).
        executed_precision: what the runtime really executes ("fp32", "bf16", "fp16", "int8"),
            determined by each backend from the model and the runtime, never copied from the request.
        load_seconds: wall time of ``Backend.load`` (reading + compiling), seconds.
    """

    backend: str = "?"
    _accepted_shape: tuple[int, ...] | None = None  # the last shape check_input passed

    def __init__(
        self,
        *,
        artifact: Path | None,
        input_shape: tuple[int | None, ...],
        requested_precision: str,
        executed_precision: str,
    ) -> None:
        self.artifact = artifact
        self.input_shape = tuple(input_shape)
        self.requested_precision = requested_precision
        self.executed_precision = executed_precision
        self.load_seconds = 0.0

    @property
    def static_batch(self) -> int | None:
        """The only batch size the session takes, or None when the batch axis is dynamic."""
        return self.input_shape[0] if self.input_shape else None

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch.

        Args:
            x: float32 array ``[B, *input_shape[1:]]``.

        Returns:
            The model's first output as float32, ``[B, ...]`` (logits for a classifier).

        Raises:
            ShapeError: wrong dtype, rank, sample shape, or a batch the session cannot take.
        """
        # Fast path: the latency loop feeds one array shape thousands of times, and a
        # microsecond of checking is a few percent of a small model's call.
        if not (type(x) is np.ndarray and x.dtype == np.float32 and x.shape == self._accepted_shape):
            self.check_input(x)
            self._accepted_shape = x.shape
        out = self._run(x)
        return (
            out if type(out) is np.ndarray and out.dtype == np.float32 else np.asarray(out, dtype=np.float32)
        )

    def check_input(self, x: np.ndarray) -> None:
        """Raise ShapeError (one line naming the model file and both shapes) unless ``x`` fits."""
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise ShapeError(
                f"{self.backend} session expects a float32 array, got {got}", hint="x.astype(np.float32)"
            )
        want = self.input_shape
        same_rank = x.ndim == len(want) and x.ndim > 0
        sample_fits = same_rank and all(
            w is None or w == g for w, g in zip(want[1:], x.shape[1:], strict=True)
        )
        if sample_fits and (want[0] is None or want[0] == x.shape[0]):
            return
        if sample_fits:
            hint = f"this model takes batch {want[0]} only: feed that, or re-export with a dynamic batch"
        else:
            hint = "feed [batch, *sample shape] frames shaped like the training data"
        model = f"{self.artifact}: " if self.artifact is not None else ""
        raise ShapeError(
            f"{model}input of shape {list(x.shape)} does not fit the {self.backend} model input "
            f"{format_shape(want)}",
            hint=hint,
        )

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run a validated batch; return the first output."""


class Backend(ABC):
    """A runtime that opens model artifacts. Subclasses set ``name`` and ``suffixes``.

    The class attributes below are how everything that lists runtimes learns about a
    backend (the bench, ``edgekd deploy``, target profiles, the remote executor): a backend
    registered in :data:`BACKENDS` from any module takes part with no edit to edgekd.
    """

    name: str = "?"
    #: artifact file suffixes this backend reads, e.g. (".onnx",)
    suffixes: tuple[str, ...] = ()
    #: precisions this backend accepts in SessionOptions
    precisions: tuple[str, ...] = PRECISIONS
    #: a dataclass with ``extra() -> dict[str, str]``: a target profile may carry a key named
    #: after the backend holding one (its runtime settings there); None = no section.
    profile_section: type | None = None
    #: device families it runs on (CPU, GPU, CUDA, NPU): which deploy plans list it.
    devices: tuple[str, ...] = ("CPU",)
    #: regular expression of the device names a target profile may give it (upper case).
    device_pattern: str = r"^CPU$"
    #: whether the standalone device runner (:mod:`edgekd.runtime.device_runner`) opens it.
    remote: bool = False
    #: what ``edgekd deploy`` may build and measure with it, simplest first.
    deploy: tuple[DeployOption, ...] = ()
    #: the module (and pip distribution) the default :meth:`_probe` imports; None = nothing.
    runtime_module: str | None = None

    def __init__(self) -> None:
        self._reason: str | None = None
        self._probed = False

    def unavailable_reason(self) -> str | None:
        """None when the runtime imports here; else one line saying why and how to fix it."""
        if not self._probed:  # importing a runtime takes ~0.5 s: probe once
            self._reason = self._probe()
            self._probed = True
        return self._reason

    def _probe(self) -> str | None:
        """Try to import the runtime; return None or the reason it is unavailable."""
        if self.runtime_module is None:
            return None
        try:
            importlib.import_module(self.runtime_module)
        except ImportError as exc:
            return f"{self.runtime_module} is not installed ({exc}): pip install {self.runtime_module}"
        return None

    def load(self, artifact: str | os.PathLike[str], options: SessionOptions | None = None) -> Session:
        """Open ``artifact`` with ``options``; the returned session records its load time.

        Raises:
            InputFileError: the file is missing, has the wrong suffix or is not a loadable model.
            RuntimeUnavailable: the runtime is not installed or the device is absent.
            ConfigError: options this backend does not accept.
        """
        options = options or SessionOptions()
        options.validate()
        path = Path(artifact)
        if not path.is_file():
            raise InputFileError(
                f"{self.name} artifact {path} does not exist", hint="check the path or re-export"
            )
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            raise InputFileError(
                f"{self.name} cannot read {path.name}", hint=f"give a {' or '.join(self.suffixes)} file"
            )
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeUnavailable(reason)
        if options.precision not in self.precisions:
            raise ConfigError(
                f"{self.name} does not run precision {options.precision!r}",
                hint=f"use one of {', '.join(self.precisions)}",
            )
        start = time.perf_counter()
        session = self._load(path, options)
        session.load_seconds = time.perf_counter() - start
        return session

    @abstractmethod
    def _load(self, path: Path, options: SessionOptions) -> Session:
        """Open an existing file with validated options."""

    def remote_settings(self, options: SessionOptions) -> dict[str, Any]:
        """The JSON-ready runtime settings the device runner opens this backend with.

        Raises:
            ConfigError: the backend does not run on a remote device, or a bad option.
        """
        raise ConfigError(f"{self.name} does not run on a remote device")

    def artifact_entry(self, path: Path) -> str | None:
        """The bench entry id (``backend/precision``) a file gets by default when this backend
        opens it, or None when it does not (its suffix is not one of :attr:`suffixes`)."""
        if path.suffix.lower() not in self.suffixes:
            return None
        return f"{self.name}/{self.artifact_precision(path)}"

    def artifact_precision(self, path: Path) -> str:
        """The precision label of a file this backend opens (default "fp32")."""
        return "fp32"


BACKENDS: Registry[Backend] = Registry("backend")


def entry_for_artifact(path: str | os.PathLike[str]) -> str | None:
    """The bench entry the first registered backend claiming ``path`` gives it, or None."""
    path = Path(path)
    for name in BACKENDS:
        entry = BACKENDS.get(name).artifact_entry(path)
        if entry is not None:
            return entry
    return None


def session_from_artifact(
    backend_name: str, artifact: str | os.PathLike[str], options: SessionOptions | None = None
) -> Session:
    """Open ``artifact`` with the backend registered as ``backend_name``.

    >>> session = session_from_artifact("onnxruntime", "student.onnx", SessionOptions(threads=1))
    >>> logits = session.run(frames)  # float32 [B, 2, 128] -> [B, num_classes]
    """
    return BACKENDS.get(backend_name).load(artifact, options)
