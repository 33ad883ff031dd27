"""Every CLI entry point that reads a file, as an argv builder over named slots.

A case overrides one slot (``model_pt``, ``data``, ``teacher``, ``target``...) with its broken
file; every other slot holds a valid file, so the broken one is the only reason to refuse.
Outputs go under the case folder (``--out``), which the sandbox watches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from tests.robustness.harness import Sandbox
from tests.robustness.valid_files import ValidFiles, recipe_yaml

FAST_BENCH = ("--min-runs", "1", "--min-seconds", "0", "-q")


@dataclasses.dataclass
class Slots:
    """The files one invocation reads; defaults are the valid ones."""

    valid: ValidFiles
    box: Sandbox
    model_pt: Path | None = None
    model_onnx: Path | None = None
    data: Path | None = None
    teacher: Path | None = None
    target: Path | None = None
    target_torch: Path | None = None  # the static gate of a .pt needs a torch target
    calibration: Path | None = None
    qat_config: Path | None = None
    result: Path | None = None
    baseline: Path | None = None
    recipe: Path | None = None  # a recipe file as is (recipe cases)
    source: str = "npz"  # or rml2016 / rml2018 / imagefolder: the generated recipe's data source
    source_path: Path | None = None  # the generated recipe's data.path
    recipe_teacher: Path | None = None  # the generated recipe's teacher.checkpoint

    def __post_init__(self) -> None:
        v = self.valid
        self.model_pt = self.model_pt or v.student
        self.model_onnx = self.model_onnx or v.onnx
        self.data = self.data or v.npz
        self.teacher = self.teacher or v.teacher
        self.target = self.target or v.target
        self.target_torch = self.target_torch or v.target_torch
        self.calibration = self.calibration or v.calibration
        self.qat_config = self.qat_config or v.qat_config
        self.result = self.result or v.bench
        self.baseline = self.baseline or v.root / "baseline.json"

    @property
    def out(self) -> Path:
        return self.box.out

    def recipe_file(self) -> Path:
        """The recipe given, or one generated from the source slots (written before the run)."""
        if self.recipe is not None:
            return self.recipe
        text = recipe_yaml(self.valid, self.source, self.source_path)
        if self.recipe_teacher is not None:
            default = {
                "npz": self.valid.teacher,
                "rml2016": self.valid.teacher,
                "rml2018": self.valid.teacher_rml18,
                "imagefolder": self.valid.teacher_img,
            }[self.source]
            text = text.replace(f"checkpoint: {default}", f"checkpoint: {self.recipe_teacher}")
        if self.calibration != self.valid.calibration:
            text = text.replace(f"calibration: {self.valid.calibration}", f"calibration: {self.calibration}")
        path = self.box.dir / "recipe.yaml"
        path.write_text(text)
        return path


def _gate(s: Slots, *extra: object) -> list:
    return [
        "gate", s.result, "--target", s.target, *extra,
        "--junit", s.box.dir / "gate.xml", "--json", s.box.dir / "verdict.json",
    ]  # fmt: skip


def _deploy(model: Path, s: Slots) -> list:
    return [
        "deploy", model, "--target", s.target, "--data", s.data, "--out", s.out,
        "--runtimes", "onnxruntime", "--calibration", s.calibration, *FAST_BENCH,
    ]  # fmt: skip


ENTRIES: dict[str, Callable[[Slots], list]] = {
    "export": lambda s: ["export", s.model_pt, "--data", s.data, "--out", s.out, "--no-openvino", "-q"],
    "export-target": lambda s: [
        "export",
        s.model_pt,
        "--data",
        s.data,
        "--out",
        s.out,
        "--no-openvino",
        "--target",
        s.target,
        "-q",
    ],
    "bench-pt": lambda s: ["bench", s.model_pt, "--data", s.data, "--out", s.out, *FAST_BENCH],
    "bench-onnx": lambda s: ["bench", s.model_onnx, "--data", s.data, "--out", s.out, *FAST_BENCH],
    "bench-teacher": lambda s: [
        "bench",
        s.model_onnx,
        "--teacher",
        s.teacher,
        "--reference",
        "onnxruntime/fp32",
        "--data",
        s.data,
        "--out",
        s.out,
        *FAST_BENCH,
    ],
    "bench-target": lambda s: [
        "bench",
        s.model_onnx,
        "--target",
        s.target,
        "--reference",
        "onnxruntime/fp32",
        "--data",
        s.data,
        "--out",
        s.out,
        *FAST_BENCH,
    ],
    "quantize": lambda s: [
        "quantize",
        s.model_onnx,
        "--data",
        s.data,
        "--calibration",
        s.calibration,
        "--min-top1-agreement",
        "0",
        "--max-accuracy-drop",
        "1",
        "--out",
        s.out / "student.int8.onnx",
        "-q",
    ],
    "gate": lambda s: _gate(s),
    "gate-baseline": lambda s: _gate(s, "--baseline", s.baseline),
    "gate-update-baseline": lambda s: _gate(s, "--baseline", s.baseline, "--update-baseline"),
    "gate-static-pt": lambda s: _gate(dataclasses.replace(s, result=s.model_pt, target=s.target_torch)),
    "gate-static-onnx": lambda s: _gate(dataclasses.replace(s, result=s.model_onnx)),
    "targets": lambda s: ["targets", s.target],
    "ensemble": lambda s: ["ensemble", s.model_pt, s.teacher, "--out", s.box.dir / "ensemble.pt", "-q"],
    "distill-data": lambda s: [
        "distill",
        "--config",
        Slots(s.valid, s.box).recipe_file(),
        "--data",
        s.data,
        "--teacher",
        s.teacher,
        "--out",
        s.out,
        "-q",
    ],
    "distill-recipe": lambda s: ["distill", "--config", s.recipe_file(), "--out", s.out, "-q"],
    "run-recipe": lambda s: ["run", s.recipe_file(), "--out", s.out, "-q"],
    "deploy-pt": lambda s: _deploy(s.model_pt, s),
    "deploy-onnx": lambda s: _deploy(s.model_onnx, s),
    "qat": lambda s: [
        "qat",
        s.model_pt,
        "--teacher",
        s.teacher,
        "--data",
        s.data,
        "--config",
        s.qat_config,
        "--out",
        s.out,
        "-q",
    ],
}


def argv(entry: str, valid: ValidFiles, box: Sandbox, **slots) -> list:
    return ENTRIES[entry](Slots(valid, box, **slots))
