"""Calibration recipes (YAML): broken and valid recipes through every command that reads one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import CALIBRATION_YAML


def _sub(old: str, new: str):
    return lambda text: mut.replace_once(text, old, new)


VALUES = {
    "num_samples-zero": _sub("num_samples: 16", "num_samples: 0"),
    "num_samples-negative": _sub("num_samples: 16", "num_samples: -16"),
    "num_samples-string": _sub("num_samples: 16", "num_samples: many"),
    "num_samples-float": _sub("num_samples: 16", "num_samples: 1.5"),
    "source_split-unknown": _sub("source_split: train", "source_split: tests"),
    "selection-unknown": _sub("selection: random", "selection: best"),
    "seed-negative": _sub("seed: 0", "seed: -1"),
    "seed-string": _sub("seed: 0", "seed: zero"),
    "name-empty": _sub("name: robust-calibration", 'name: ""'),
    "unknown-key": lambda text: text + "colour: blue\n",
    "misspelled-key": _sub("num_samples:", "num_sampels:"),
}
SYNTAX = list(mut.yaml_syntax_mutations(CALIBRATION_YAML, "selection", Path("m")))


def write_mutation(name: str, valid, dest: Path) -> Path:
    text = CALIBRATION_YAML
    if name == "valid":
        dest.write_text(text)
    elif name in VALUES:
        dest.write_text(VALUES[name](text))
    else:
        dest.write_bytes(mut.yaml_syntax_mutations(text, "selection", valid.marker_dir / "yaml-tag")[name])
    return dest


SLOT = {"quantize": "calibration", "deploy-onnx": "calibration", "run-recipe": "calibration"}
CASES = matrix("calibration", SYNTAX + list(VALUES), ["quantize"])
CASES += matrix(
    "calibration", ["empty-file", "dup-top-key", "num_samples-zero", "python-tag"], ["deploy-onnx"]
)
CASES += matrix("calibration", ["dup-top-key", "num_samples-zero"], ["run-recipe"])
VALID = [case("calibration", e, "accept", f"valid-{e}", "valid", e) for e in SLOT]


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_calibration_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.yaml")
    expect_refusal(box, argv(entry, valid, box, calibration=bad), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_calibration_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "calibration-copy.yaml")
    expect_acceptance(box, argv(entry, valid, box, calibration=good))
