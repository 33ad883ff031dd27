"""One shape for every quantizer: what it reads, what it returns, where it writes.

Learned from NNCF's split of the algorithm (``nncf/quantization/algorithms/min_max/``) from
its per-framework backends: the steps every INT8 build shares (validate the config, resolve
the thread count it times with, name the output, wrap the report) live here once, in
:class:`BaseQuantizer`; each runtime's module (``ort_static``, ``dynamic``, ``nncf_openvino``,
``tensorrt_qdq``) implements the algorithm, and a thin :class:`BaseQuantizer` subclass in
:mod:`edgekd.quantize.quantizers` (import it to have the built-ins registered) implements
``build``. A quantizer from a user's module registers its class the same way::

    @QUANTIZERS.register("myruntime")
    class MyQuantizer(BaseQuantizer):
        name, backend, kind, suffix = "myruntime", "myruntime", "myruntime-int8", ".int8.bin"
        def build(self, source, out, cfg, inputs): ...  # -> QuantizeResult

and ``quantize.runtime: myruntime`` in a recipe picks it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgekd.registry import Registry

Evaluate = Callable[[Path], float]
"""Labelled accuracy (a fraction in [0, 1]) of the model file at the given path."""


@dataclass
class QuantizeInputs:
    """What a quantizer reads besides the model and its config.

    ``calibration``: float32 ``[N, ...]`` frames from a calibration recipe (see
    :func:`edgekd.data.calibration.calibration_frames`). ``threads``: the intra-op thread count
    INT8 and FP32 are timed with, the one the model will run with (a target's or the CLI's);
    None means every core this process may use. ``eval_samples``: ``[M, ...]`` frames on which
    INT8 top-1 must agree with FP32 (no check when None). ``validation``: the labelled
    validation split (an ArrayDataset or a map-style dataset) and ``evaluate`` the accuracy
    of a model file on it, for accuracy-aware builds. ``verbose``: let the runtime's logs through.
    """

    calibration: np.ndarray
    threads: int | None = None
    eval_samples: np.ndarray | None = None
    validation: Any = None
    evaluate: Evaluate | None = None
    verbose: bool = False

    def timing_threads(self) -> int:
        """``threads``, else ``OMP_NUM_THREADS`` when the user set it, else the cores this process
        may use (affinity and cgroup quota), never the host's ``os.cpu_count()``: a container
        limited to two cores times with two (:func:`edgekd.runtime.threads.default_threads`)."""
        if self.threads is not None:
            return self.threads
        from edgekd.runtime.threads import default_threads

        return default_threads()


@dataclass
class QuantizeResult:
    """What one quantizer built.

    ``path``: the INT8 model (its sidecars beside it); ``kind``: the manifest kind;
    ``backend``: the runtime that runs it; ``report``: the quantizer's own report (a dataclass
    with ``to_dict()``), stored under ``key`` in manifests; ``summary``: one line for the log;
    ``warnings``: one line each (INT8 not faster, compute left in float).
    """

    quantizer: str
    path: Path
    kind: str
    backend: str
    report: Any
    key: str = "quantization"
    summary: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{key: report}`` as plain data: the manifest's and the deploy cache's layout."""
        report = self.report.to_dict() if hasattr(self.report, "to_dict") else self.report
        return {self.key: report}


@runtime_checkable
class Quantizer(Protocol):
    """A post-training INT8 builder for one runtime."""

    name: str
    backend: str
    kind: str
    suffix: str
    build_recipe: str | None

    def output_path(self, out_dir: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path: ...

    def quantize(
        self, source: str | os.PathLike[str], out: str | os.PathLike[str], cfg: Any, inputs: QuantizeInputs
    ) -> QuantizeResult: ...

    def fp32_reference(self, source: Path) -> Path: ...

    def output_files(self, path: Path) -> list[Path]: ...


class BaseQuantizer:
    """The shared half of every quantizer (template method: ``quantize`` checks, ``build`` works).

    Class attributes: ``name`` (registry key, the recipe's ``quantize.runtime``), ``backend``
    (the runtime that opens the output), ``kind`` (manifest kind), ``suffix`` (appended to the
    source's stem: ``student.onnx`` -> ``student.int8.onnx``), ``build_recipe`` (the deploy build
    recipe it serves, or None), ``sidecars`` (suffixes of files written beside the output).
    """

    name: str = "?"
    backend: str = "?"
    kind: str = "?"
    suffix: str = ".int8.onnx"
    build_recipe: str | None = None
    sidecars: tuple[str, ...] = ()

    def output_path(self, out_dir: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path:
        """The one naming rule: ``out_dir / <source stem><suffix>``."""
        return Path(out_dir) / f"{Path(source).stem}{self.suffix}"

    def output_files(self, path: Path) -> list[Path]:
        """The files one output consists of (the model and its sidecars)."""
        return [path, *(path.with_suffix(s) for s in self.sidecars)]

    def fp32_reference(self, source: Path) -> Path:
        """The FP32 model the INT8 output is judged against on its own runtime."""
        return source

    def quantize(
        self, source: str | os.PathLike[str], out: str | os.PathLike[str], cfg: Any, inputs: QuantizeInputs
    ) -> QuantizeResult:
        """Build INT8 of ``source`` at ``out``; nothing is left at ``out`` when it fails."""
        cfg.validate()
        return self.build(Path(source), Path(out), cfg, inputs)

    def build(self, source: Path, out: Path, cfg: Any, inputs: QuantizeInputs) -> QuantizeResult:
        raise NotImplementedError

    def result(self, out: Path, report: Any, summary: str, *, key: str = "quantization") -> QuantizeResult:
        """Wrap a report; its assessment's warnings (if any) become the result's."""
        assessment = getattr(report, "assessment", None)
        warnings = list(assessment.warnings) if assessment is not None else []
        return QuantizeResult(self.name, out, self.kind, self.backend, report, key, summary, warnings)


#: Name -> quantizer class (registered classes, instantiated per use by ``quantizer_for``).
QUANTIZERS: Registry[type[Quantizer]] = Registry("quantizer")
