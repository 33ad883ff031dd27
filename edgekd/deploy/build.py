"""The artifact each candidate needs, built through edgekd's own export and quantize code, cached.

Recipes (``CandidateSpec.build``):

- ``student``: the student file itself (a ``.pt`` checkpoint for PyTorch eager).
- ``onnx``: the parity-checked ONNX export of the ``.pt`` (or the given ``.onnx``).
- ``openvino-ir``: the ONNX converted to OpenVINO IR, checked against ONNX Runtime; the fp16
  and bf16 candidates open this same IR with another precision hint.
- ``ort-int8``: ONNX Runtime static INT8 (QDQ) with the candidate's activation type.
- ``openvino-int8``: NNCF post-training INT8 of the ONNX model, as an IR.

Each build is keyed by its input's sha256, the recipe, the calibration frames' hash (INT8
only) and the library versions (see :mod:`edgekd.deploy.cache`). A build that fails is
recorded with its one-line reason and every candidate that needs it fails with it; the
other candidates still run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import library_versions
from edgekd.config import to_dict
from edgekd.deploy.cache import BuildEntry, DeployCache
from edgekd.deploy.candidates import CandidateSpec
from edgekd.errors import EdgeKDError

#: Build recipe -> (the recipe it is built from, file name in the cache entry).
RECIPES: dict[str, tuple[str | None, str]] = {
    "student": (None, ""),
    "onnx": ("student", "model.onnx"),
    "openvino-ir": ("onnx", "model.xml"),
    "ort-int8": ("onnx", "model.int8.onnx"),
    "openvino-int8": ("onnx", "model.int8.xml"),
}


class BuildFailed(EdgeKDError):
    """A candidate's artifact could not be built (the reason is one line)."""


@dataclasses.dataclass
class BuildInputs:
    """What every build reads.

    ``parity_frames``: float32 ``[N, ...]`` real frames the exports are checked on;
    ``calibration``: float32 ``[M, ...]`` INT8 calibration frames, ``calibration_sha256`` their
    hash (over the array bytes), ``calibration_name`` the recipe they were chosen by.
    """

    student: Path
    student_sha256: str
    parity_frames: np.ndarray
    calibration: np.ndarray
    calibration_sha256: str
    calibration_name: str

    @property
    def student_is_onnx(self) -> bool:
        return self.student.suffix.lower() == ".onnx"


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 over dtype, shape and the bytes of ``frames``."""
    digest = hashlib.sha256(str((frames.dtype.str, frames.shape)).encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


def build_recipe(spec: CandidateSpec) -> str:
    """The recipe key of a candidate's artifact: ORT INT8 builds differ by activation type."""
    if spec.build == "ort-int8":
        return f"ort-int8-{spec.activation_type}"
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
        base_recipe = "ort-int8" if recipe.startswith("ort-int8") else recipe
        parent_recipe, main_name = RECIPES[base_recipe]
        try:
            parent = self._get(parent_recipe or "student")
        except BuildFailed as exc:
            raise BuildFailed(f"{exc.message} (needed for {recipe})") from None
        int8 = base_recipe in ("ort-int8", "openvino-int8")
        parts = {
            "input_sha256": parent.sha256,
            "recipe": self._recipe_parts(recipe, spec),
            "calibration_sha256": inputs.calibration_sha256 if int8 else None,
            "versions": library_versions(),
        }
        maker = getattr(self, "_make_" + base_recipe.replace("-", "_"))
        entry = self.cache.build(parts, main_name, lambda work: maker(parent.path, work / main_name, spec))
        self.log(f"build {recipe}: {'cached' if entry.cached else 'built'} ({entry.sha256[:12]})")
        return entry

    def _recipe_parts(self, recipe: str, spec: CandidateSpec | None) -> dict[str, Any]:
        parts: dict[str, Any] = {"build": recipe}
        if recipe == "onnx":
            parts["export"] = to_dict(_export_config())
        elif recipe.startswith("ort-int8"):
            parts["quantize"] = to_dict(_ort_config(spec.activation_type, self.inputs.calibration_name))
        elif recipe == "openvino-int8":
            parts["quantize"] = to_dict(_openvino_config(self.inputs.calibration_name))
        return parts

    # One maker per recipe: (parent artifact, output path, spec) -> report (plain data).

    def _make_onnx(self, student: Path, out: Path, _spec: Any) -> dict[str, Any]:
        from edgekd.export.onnx_export import export_onnx
        from edgekd.models.checkpoint import load_checkpoint

        model, _meta = load_checkpoint(student)
        parity = export_onnx(model, self.inputs.parity_frames, out, _export_config())
        return {"parity": parity.to_dict()}

    def _make_openvino_ir(self, onnx_path: Path, out: Path, _spec: Any) -> dict[str, Any]:
        from edgekd.export.onnx_export import run_onnxruntime
        from edgekd.export.openvino_export import export_openvino

        frames = self.inputs.parity_frames
        parity = export_openvino(
            onnx_path, out, frames, run_onnxruntime(onnx_path, frames), _export_config().parity
        )
        return {"parity": parity.to_dict()}

    def _make_ort_int8(self, onnx_path: Path, out: Path, spec: CandidateSpec) -> dict[str, Any]:
        from edgekd.quantize.ort_static import quantize_onnx_static

        cfg = _ort_config(spec.activation_type, self.inputs.calibration_name)
        # No agreement check here: the deploy rule judges every candidate by its labelled
        # accuracy against the FP32 reference, on the same frames and through the same evaluator.
        report = quantize_onnx_static(onnx_path, out, self.inputs.calibration, cfg)
        return {"quantization": report.to_dict()}

    def _make_openvino_int8(self, onnx_path: Path, out: Path, _spec: Any) -> dict[str, Any]:
        from edgekd.quantize.nncf_openvino import quantize_openvino

        cfg = _openvino_config(self.inputs.calibration_name)
        report = quantize_openvino(onnx_path, out, self.inputs.calibration, cfg)
        return {"quantization": report.to_dict()}


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _export_config() -> Any:
    from edgekd.export.onnx_export import ExportConfig

    # A dynamic batch: the accuracy pass runs in batches, the latency loop at batch 1.
    return ExportConfig(dynamic_batch=True, openvino=False)


def _ort_config(activation_type: str | None, calibration: str) -> Any:
    from edgekd.quantize.config import QuantizeConfig

    return QuantizeConfig(
        runtime="onnxruntime",
        activation_type=activation_type or "uint8",
        calibration=calibration,
        max_accuracy_drop=None,
    )


def _openvino_config(calibration: str) -> Any:
    from edgekd.quantize.config import QuantizeConfig

    return QuantizeConfig(runtime="openvino", calibration=calibration, max_accuracy_drop=None)
