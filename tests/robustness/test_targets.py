"""Target profiles (YAML): broken, hostile and valid profiles through every command that reads one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import TARGET_YAML


def _sub(old: str, new: str):
    return lambda text: mut.replace_once(text, old, new)


def _add(line: str):
    return lambda text: text + line + "\n"


def _budget(line: str):
    return lambda text: mut.replace_once(text, "budgets:\n", f"budgets:\n  {line}\n")


VALUES = {
    "missing-name": _sub("name: robust-target\n", ""),
    "missing-runtime": _sub("runtime: onnxruntime\n", ""),
    "unknown-key": _add("colour: blue"),
    "misspelled-budget": _sub("  min_accuracy:", "  min_acuracy:"),
    "runtime-unknown": _sub("runtime: onnxruntime", "runtime: tensorflow"),
    "precision-unknown": _sub("precision: fp32", "precision: fp8"),
    "threads-zero": _add("threads: 0"),
    "threads-negative": _add("threads: -2"),
    "threads-string": _add("threads: four"),
    "threads-float": _add("threads: 1.5"),
    "description-list": _sub("description: robustness corpus target", "description: [a, b]"),
    "input_shape-negative": _sub("input_shape: [1, 2, 128]", "input_shape: [1, -2, 128]"),
    "input_shape-zero": _sub("input_shape: [1, 2, 128]", "input_shape: [0, 2, 128]"),
    "input_shape-empty": _sub("input_shape: [1, 2, 128]", "input_shape: []"),
    "input_shape-string": _sub("input_shape: [1, 2, 128]", "input_shape: 1x2x128"),
    "input_shape-float": _sub("input_shape: [1, 2, 128]", "input_shape: [1, 2.5, 128]"),
    "max_p90-negative": _sub("max_p90_ms: 1000.0", "max_p90_ms: -1.0"),
    "max_p90-nan": _sub("max_p90_ms: 1000.0", "max_p90_ms: .nan"),
    "min_accuracy-above-1": _sub("min_accuracy: 0.0", "min_accuracy: 1.5"),
    "min_accuracy-percent": _sub("min_accuracy: 0.0", "min_accuracy: 40"),
    "min_accuracy-nan": _sub("min_accuracy: 0.0", "min_accuracy: .nan"),
    "max_size-negative": _sub("max_size_bytes: 10000000", "max_size_bytes: -1"),
    "max_size-float": _sub("max_size_bytes: 10000000", "max_size_bytes: 1.5"),
    "latency_confidence-1.5": _budget("latency_confidence: 1.5"),
    "latency_regression-negative": _budget("max_latency_regression: -0.1"),
    "accuracy_drop-above-1": _budget("max_accuracy_drop: 2.0"),
    "ort-level-unknown": _sub("graph_optimization_level: all", "graph_optimization_level: turbo"),
    "ort-mode-unknown": _sub("execution_mode: sequential", "execution_mode: sideways"),
    "ort-section-list": _sub(
        "onnxruntime:\n  execution_mode: sequential\n  graph_optimization_level: all\n", "onnxruntime: [1]\n"
    ),
}
HOSTS = {
    "ssh-port-70000": "ssh://pi@device.local:70000",
    "ssh-port-zero": "ssh://pi@device.local:0",
    "ssh-port-text": "ssh://pi@device.local:http",
    "ssh-empty": "ssh://",
    "ssh-no-host": "ssh://pi@",
    "host-ftp": "ftp://device.local",
    "host-shell-metachar": "ssh://pi@device;touch${HOME}/x",
    "host-option-injection": "ssh://-oProxyCommand=touch@device",
}
SHAPE = ["input_shape-mismatch"]


def write_mutation(name: str, valid, dest: Path) -> Path:
    text = TARGET_YAML
    if name == "valid":
        dest.write_text(text)
    elif name in VALUES:
        dest.write_text(VALUES[name](text))
    elif name in HOSTS:
        dest.write_text(mut.replace_once(text, "host: local", f"host: {HOSTS[name]}"))
    elif name == "input_shape-mismatch":
        dest.write_text(mut.replace_once(text, "input_shape: [1, 2, 128]", "input_shape: [1, 2, 64]"))
    else:
        dest.write_bytes(mut.yaml_syntax_mutations(text, "runtime", valid.marker_dir / "yaml-tag")[name])
    return dest


SYNTAX = list(mut.yaml_syntax_mutations(TARGET_YAML, "runtime", Path("m")))
LOADING = SYNTAX + list(VALUES)
CASES = matrix("target", LOADING + list(HOSTS), ["targets", "gate", "gate-static-onnx", "export-target"])
CASES += matrix("target", LOADING + SHAPE, ["bench-target"])
CASES += matrix("target", SHAPE, ["gate", "gate-static-onnx"])
CASES += matrix("target", ["empty-file", "dup-top-key", "max_p90-negative", *SHAPE], ["deploy-onnx"])
VALID = [
    case("target", e, "accept", f"valid-{e}", "valid", e)
    for e in ["targets", "gate", "gate-static-onnx", "export-target", "bench-target", "deploy-onnx"]
]


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_target_refused(valid, valid_bench, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.yaml")
    # A profile is known by its file or by its name (the name is inside the file).
    expect_refusal(box, argv(entry, valid, box, target=bad), [bad.name, "robust-target"])


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_target_accepted(valid, valid_bench, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "target-copy.yaml")
    expect_acceptance(box, argv(entry, valid, box, target=good))
