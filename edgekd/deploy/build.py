"""The artifact each candidate needs, built through the pipeline's own export and quantize steps
(:mod:`edgekd.pipeline.conversion`), cached.

Recipes (``CandidateSpec.build``):

- ``student``: the student file itself (a ``.pt`` checkpoint for PyTorch eager).
- ``onnx``: the parity-checked ONNX export of the ``.pt`` (or the given ``.onnx``).
- ``openvino-ir``: the ONNX converted to OpenVINO IR, checked against ONNX Runtime; the fp16
  and bf16 candidates open this same IR with another precision hint.
- one per quantizer that names a ``build_recipe`` (:data:`edgekd.quantize.quantizers.QUANTIZERS`):
  ``ort-int8`` (ONNX Runtime static INT8, QDQ, with the candidate's activation type) and
  ``openvino-int8`` (NNCF post-training INT8 of the ONNX model, as an IR).

Each build is keyed by its input's sha256, the recipe, the calibration frames' hash (INT8
only) and the library versions (see :mod:`edgekd.deploy.cache`). A build that fails is
recorded with its one-line reason and every candidate that needs it fails with it; the
other candidates still run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import library_versions
from edgekd.config import to_dict
from edgekd.deploy.cache import BuildEntry, DeployCache
from edgekd.deploy.candidates import CandidateSpec
from edgekd.errors import EdgeKDError

#: Export recipes -> (the recipe each is built from, file name in the cache entry).
_EXPORTS: dict[str, tuple[str | None, str]] = {
    "student": (None, ""),
    "onnx": ("student", "model.onnx"),
    "openvino-ir": ("onnx", "model.xml"),
}


def _quantizers() -> dict[str, Any]:
    """Build recipe -> the quantizer (an instance) that builds it, from the registry."""
    from edgekd.quantize.quantizers import QUANTIZERS, quantizer_for

    found = {}
    for name in QUANTIZERS.names():
        quantizer = quantizer_for(name)
        if quantizer.build_recipe is not None:
            found[quantizer.build_recipe] = quantizer
    return found


class _BuildRecipes(Mapping[str, tuple[str | None, str]]):
    """Build recipe -> (the recipe it is built from, file name in the cache entry): the exports,
    and one INT8 recipe per quantizer with a ``build_recipe``, read from the registry on each
    look-up so a quantizer registered by a user's module is buildable too."""

    def _table(self) -> dict[str, tuple[str | None, str]]:
        quantized = {
            recipe: ("onnx", quantizer.output_path("", "model.onnx").name)
            for recipe, quantizer in _quantizers().items()
        }
        return {**_EXPORTS, **quantized}

    def __getitem__(self, key: str) -> tuple[str | None, str]:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


RECIPES: Mapping[str, tuple[str | None, str]] = _BuildRecipes()


class BuildFailed(EdgeKDError):
    """A candidate's artifact could not be built (the reason is one line)."""


@dataclasses.dataclass
class BuildInputs:
    """What every build reads.

    ``parity_frames``: float32 ``[N, ...]`` real frames the exports are checked on;
    ``calibration``: float32 ``[M, ...]`` INT8 calibration frames, ``calibration_sha256`` their
    hash (over the array bytes), ``calibration_name`` the recipe they were chosen by;
    ``threads``: the thread count quantizers time INT8 against FP32 with (None: every usable core).
    """

    student: Path
    student_sha256: str
    parity_frames: np.ndarray
    calibration: np.ndarray
    calibration_sha256: str
    calibration_name: str
    threads: int | None = None

    @property
    def student_is_onnx(self) -> bool:
        return self.student.suffix.lower() == ".onnx"


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 over dtype, shape and the bytes of ``frames``."""
    digest = hashlib.sha256(str((frames.dtype.str, frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def build_recipe(spec: CandidateSpec) -> str:
    """The recipe key of a candidate's artifact: INT8 builds differ by activation type (ORT's)."""
    if spec.activation_type is not None:
        return f"{spec.build}-{spec.activation_type}"
    return spec.build


class ArtifactBuilder:
    """Builds (or finds in the cache) each recipe once per deploy run, failures included."""

    def __init__(self, inputs: BuildInputs, cache: DeployCache, log: Callable[[str], None]) -> None:
        self.inputs = inputs
        self.cache = cache
        self.log = log
        self._done: dict[str, BuildEntry | BuildFailed] = {}
        self.seconds: dict[str, float] = {}

    def artifact_for(self, spec: CandidateSpec) -> BuildEntry:
        """The built artifact of ``spec``; raises BuildFailed with the reason."""
        return self._get(build_recipe(spec), spec)

    def _get(self, recipe: str, spec: CandidateSpec | None = None) -> BuildEntry:
        if recipe not in self._done:
            start = time.perf_counter()
            try:
                self._done[recipe] = self._make(recipe, spec)
            except BuildFailed as exc:
                self._done[recipe] = exc
            except EdgeKDError as exc:  # an export or quantizer refusing the model
                self._done[recipe] = BuildFailed(f"build failed: {exc.one_line()}")
            except Exception as exc:  # one broken build must not sink the other candidates
                self._done[recipe] = BuildFailed(f"build failed: {_one_line(exc)}")
            self.seconds[recipe] = time.perf_counter() - start
        result = self._done[recipe]
        if isinstance(result, BuildFailed):
            raise result
        return result

    def _make(self, recipe: str, spec: CandidateSpec | None) -> BuildEntry:
        inputs = self.inputs
        if recipe == "student" or (recipe == "onnx" and inputs.student_is_onnx):
            path = inputs.student
            return BuildEntry("input", path, [path], inputs.student_sha256, {"report": None}, cached=True)
        base_recipe = spec.build if spec is not None else recipe
        parent_recipe, main_name = RECIPES[base_recipe]
        try:
            parent = self._get(parent_recipe or "student")
        except BuildFailed as exc:
            raise BuildFailed(f"{exc.message} (needed for {recipe})") from None
        quantizer = _quantizers().get(base_recipe)
        parts = {
            "input_sha256": parent.sha256,
            "recipe": self._recipe_parts(recipe, spec, quantizer),
            "calibration_sha256": inputs.calibration_sha256 if quantizer is not None else None,
            "versions": library_versions(),
        }
        if quantizer is not None:
            make = functools.partial(self._make_int8, quantizer, spec, parent.path)
        else:
            make = functools.partial(getattr(self, "_make_" + base_recipe.replace("-", "_")), parent.path)
        entry = self.cache.build(parts, main_name, lambda work: make(work / main_name))
        self.log(f"build {recipe}: {'cached' if entry.cached else 'built'} ({entry.sha256[:12]})")
        return entry

    def _recipe_parts(self, recipe: str, spec: CandidateSpec | None, quantizer: Any) -> dict[str, Any]:
        parts: dict[str, Any] = {"build": recipe}
        if recipe == "onnx":
            parts["export"] = to_dict(_export_config())
        elif quantizer is not None:
            parts["quantize"] = to_dict(_quantize_config(quantizer, spec, self.inputs.calibration_name))
        return parts

    # One maker per recipe: (parent artifact, output path) -> report (plain data).

    def _make_onnx(self, student: Path, out: Path) -> dict[str, Any]:
        from edgekd.models.checkpoint import load_checkpoint
        from edgekd.pipeline.conversion import export_onnx_step

        model, _meta = load_checkpoint(student)
        parity = export_onnx_step(model, self.inputs.parity_frames, out, _export_config())
        return {"parity": parity.to_dict()}

    def _make_openvino_ir(self, onnx_path: Path, out: Path) -> dict[str, Any]:
        from edgekd.pipeline.conversion import export_openvino_step

        parity = export_openvino_step(onnx_path, out, self.inputs.parity_frames, _export_config().parity)
        return {"parity": parity.to_dict()}

    def _make_int8(
        self, quantizer: Any, spec: CandidateSpec | None, onnx_path: Path, out: Path
    ) -> dict[str, Any]:
        from edgekd.pipeline.conversion import quantize_step
        from edgekd.quantize.protocol import QuantizeInputs

        cfg = _quantize_config(quantizer, spec, self.inputs.calibration_name)
        # No agreement check here: the deploy rule judges every candidate by its labelled
        # accuracy against the FP32 reference, on the same frames and through the same evaluator.
        inputs = QuantizeInputs(self.inputs.calibration, threads=self.inputs.threads)
        return quantize_step(onnx_path, out, cfg, inputs).to_dict()


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _export_config() -> Any:
    from edgekd.export.onnx_export import ExportConfig

    # A dynamic batch: the accuracy pass runs in batches, the latency loop at batch 1.
    return ExportConfig(dynamic_batch=True, openvino=False)


def _quantize_config(quantizer: Any, spec: CandidateSpec | None, calibration: str) -> Any:
    """The quantizer's defaults with the candidate's activation type (ONNX Runtime's u8/s8
    builds), calibrated by ``calibration``; no accuracy budget (the deploy rule judges)."""
    from edgekd.quantize.config import QuantizeConfig

    chosen = {"activation_type": spec.activation_type} if spec is not None and spec.activation_type else {}
    return QuantizeConfig(runtime=quantizer.name, calibration=calibration, max_accuracy_drop=None, **chosen)
