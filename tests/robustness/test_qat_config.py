"""QAT settings (YAML, ``edgekd qat --config``): broken and valid files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import QAT_YAML

VALUES = {
    "activations-int4": ("activations: uint8", "activations: int4"),
    "ranges-unknown": ("ranges: learned", "ranges: guessed"),
    "calibration_frames-zero": ("calibration_frames: 16", "calibration_frames: 0"),
    "epochs-zero": ("  epochs: 1", "  epochs: 0"),
    "temperature-zero": ("  temperature: 4.0", "  temperature: 0.0"),
    "alpha-1.5": ("  alpha: 0.7", "  alpha: 1.5"),
    "unknown-key": ("ranges: learned", "ranges: learned\ncolour: blue"),
}
SYNTAX = ["empty-file", "null-doc", "list-doc", "dup-top-key", "deep-flow-nesting", "alias-bomb"]
SYNTAX += ["python-tag", "invalid-utf8", "unclosed-flow"]


def write_mutation(name: str, valid, dest: Path) -> Path:
    if name == "valid":
        dest.write_text(QAT_YAML)
    elif name in VALUES:
        dest.write_text(mut.replace_once(QAT_YAML, *VALUES[name]))
    else:
        dest.write_bytes(mut.yaml_syntax_mutations(QAT_YAML, "ranges", valid.marker_dir / "yaml-tag")[name])
    return dest


CASES = matrix("qat-config", SYNTAX + list(VALUES), ["qat"])
VALID = [case("qat-config", "qat", "accept", "valid-qat", "valid", "qat")]


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_qat_config_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.yaml")
    expect_refusal(box, argv(entry, valid, box, qat_config=bad), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_qat_config_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "qat-copy.yaml")
    expect_acceptance(box, argv(entry, valid, box, qat_config=good))
