"""Pipeline recipes (YAML): broken, hostile and valid recipes through ``edgekd distill`` and ``run``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import MARKER_MODULE, case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import recipe_yaml

KD_BLOCK = "  kd:\n    loss: kd\n    temperature: 4.0\n    alpha: 0.7\n"
# Were a loader to accept an empty or foreign document and fall back to the built-in demo, these
# keep that demo small, so the case fails in seconds instead of training for minutes.
SMALL_DEFAULTS = [
    "data.synthetic.frames_per_class_snr=1", "data.synthetic.snr_min=0", "data.synthetic.snr_max=2",
    "teacher.train.epochs=1", "distill.train.epochs=1", "export.openvino=false",
    "bench.latency.min_runs=1", "bench.latency.min_seconds=0", "bench.latency.warmup_runs=0",
]  # fmt: skip


def _sub(old: str, new: str):
    return lambda text, v, d: mut.replace_once(text, old, new)


def _terms(term: str):
    return _sub(KD_BLOCK, f"  kd:\n    terms:\n      - {term}\n")


def _line_after(anchor: str, line: str):
    return lambda text, v, d: mut.replace_once(text, anchor, anchor + line)


def _path_of(key: str, value):
    """Replace the whole ``key: ...`` line (its value is an absolute path in the valid recipe)."""

    def apply(text: str, v, d) -> str:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:"))
        indent = line[: len(line) - len(line.lstrip())]
        return mut.replace_once(text, line, f"{indent}{key}: {value(v, d) if callable(value) else value}")

    return apply


def _folder(d: Path) -> Path:
    folder = d / "a-folder-not-a-file"
    folder.mkdir(exist_ok=True)
    return folder


def _hostile_teacher(v, d: Path) -> Path:
    """A checkpoint naming the marker module: the recipe's person did not write that name."""
    payload = torch.load(v.teacher, map_location="cpu", weights_only=True)
    payload["model_name"] = f"module:{MARKER_MODULE}:fn"
    path = d / "hostile-teacher.pt"
    torch.save(payload, path)
    return path


VALUES = {
    "name-list": _sub("name: robust\n", "name: [a, b]\n"),
    "unknown-top-key": lambda text, v, d: text + "colour: blue\n",
    "misspelled-section": _sub("distill:\n", "distil:\n"),
    "misspelled-nested": _sub("    temperature: 4.0", "    temprature: 4.0"),
    "base_dir-set": lambda text, v, d: text + "base_dir: /\n",
    "temperature-zero": _sub("    temperature: 4.0", "    temperature: 0.0"),
    "temperature-negative": _sub("    temperature: 4.0", "    temperature: -4.0"),
    "temperature-nan": _sub("    temperature: 4.0", "    temperature: .nan"),
    "alpha-1.5": _sub("    alpha: 0.7", "    alpha: 1.5"),
    "alpha-negative": _sub("    alpha: 0.7", "    alpha: -0.2"),
    "terms-temperature-zero": _terms("{name: kd, params: {temperature: 0.0, alpha: 0.7}}"),
    "terms-alpha-2": _terms("{name: kd, params: {temperature: 4.0, alpha: 2.0}}"),
    "terms-weight-negative": _terms("{name: kd, weight: -1.0}"),
    "terms-weight-nan": _terms("{name: kd, weight: .nan}"),
    "terms-unknown-loss": _terms("{name: kdd}"),
    "epochs-zero": _sub("    epochs: 1", "    epochs: 0"),
    "epochs-string": _sub("    epochs: 1", "    epochs: ten"),
    "batch_size-zero": _sub("    batch_size: 16", "    batch_size: 0"),
    "batch_size-list": _sub("    batch_size: 16", "    batch_size: [16]"),
    "lr-negative": _line_after("    batch_size: 16\n", "    lr: -0.1\n"),
    "lr-nan": _line_after("    batch_size: 16\n", "    lr: .nan\n"),
    "source-unknown": _sub("source: npz", "source: csv"),
    "data-path-missing": _path_of("path", "/nonexistent/robust/frames.npz"),
    "data-path-folder": _path_of("path", lambda v, d: _folder(d)),
    "data-path-empty": _path_of("path", '""'),
    "student-unknown": _sub("model: edgekd:cnn1d_small", "model: edgekd:cnn1d_smal"),
    "student-kwargs-unknown": _line_after("  model: edgekd:cnn1d_small\n", "  kwargs: {colour: 1}\n"),
    "teacher-checkpoint-missing": _path_of("checkpoint", "/nonexistent/robust/teacher.pt"),
    "teacher-checkpoint-module": _path_of("checkpoint", _hostile_teacher),
}
# Values only the later stages read: refused by `run` (validated at the door, before training).
RUN_ONLY = {
    "gate-target-missing": _path_of("target", "no-such-target"),
    "calibration-missing": _path_of("calibration", "/nonexistent/robust/calibration.yaml"),
    "bench-backend-unknown": _sub("[torch/fp32, onnxruntime/fp32]", "[torch/fp32, tensorflow/fp32]"),
    "min_runs-zero": _sub("min_runs: 1", "min_runs: 0"),
}
# Where the message may name the file the recipe points to instead of the recipe.
OTHER_NAME = {
    "data-path-missing": "frames.npz",
    "data-path-folder": "a-folder-not-a-file",
    "teacher-checkpoint-missing": "teacher.pt",
    "teacher-checkpoint-module": "hostile-teacher.pt",
    "gate-target-missing": "no-such-target",
    "calibration-missing": "calibration.yaml",
}
SYNTAX = list(mut.yaml_syntax_mutations("name: x\nmore: y\n", "name", Path("m")))


def write_mutation(name: str, valid, dest: Path) -> Path:
    text = recipe_yaml(valid, "npz")
    if name == "valid":
        dest.write_text(text)
    elif name in VALUES or name in RUN_ONLY:
        dest.write_text({**VALUES, **RUN_ONLY}[name](text, valid, dest.parent))
    else:
        dest.write_bytes(mut.yaml_syntax_mutations(text, "name", valid.marker_dir / "yaml-tag")[name])
    return dest


CASES = matrix("recipe", SYNTAX + list(VALUES), ["distill-recipe", "run-recipe"])
CASES += matrix("recipe", list(RUN_ONLY), ["run-recipe"])
VALID = [case("recipe", e, "accept", f"valid-{e}", "valid", e) for e in ["distill-recipe", "run-recipe"]]


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_recipe_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.yaml")
    command = argv(entry, valid, box, recipe=bad)
    if mutation in SYNTAX:
        command += [arg for item in SMALL_DEFAULTS for arg in ("--set", item)]
    expect_refusal(box, command, [bad.name, *([OTHER_NAME[mutation]] if mutation in OTHER_NAME else [])])


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_recipe_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "recipe-copy.yaml")
    expect_acceptance(box, argv(entry, valid, box, recipe=good))
