"""A bench.json or baseline is checked for ranges, units and consistency, not only types.

Every case goes through ``edgekd gate`` as RESULT and as ``--baseline``: exit 2, one line
that names the file (and the JSON path of the field when there is one), no traceback.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from tests.bench.sample_doc import sample_doc

TARGET = (
    "name: t\nruntime: onnxruntime\nprecision: int8\n"
    "budgets: {min_accuracy: 0.5, max_latency_regression: 0.2}\n"
)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation that sets ``doc[k1][k2]...`` (ints index lists) to ``value``."""

    def mutate(doc: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


# (id, mutation of a valid document, fragment the one line must hold)
FIELD_CASES = [
    ("negative_p50", _set("entries.2.latency_ms.p50", -0.1), "$.entries[2].latency_ms.p50 must be >= 0 ms"),
    ("negative_std", _set("entries.2.latency_ms.std", -1.0), "latency_ms.std"),
    ("accuracy_above_1", _set("entries.2.accuracy.overall", 88.0), "looks like a percentage"),
    ("accuracy_below_0", _set("entries.2.accuracy.overall", -0.1), "$.entries[2].accuracy.overall"),
    ("per_class_above_1", _set("entries.2.accuracy.per_class.BPSK", 1.5), "per_class.BPSK"),
    ("agreement_above_1", _set("entries.2.agreement_with_reference", 2), "agreement_with_reference"),
    ("negative_size", _set("entries.2.artifact.size_bytes", -5), "artifact.size_bytes must be >= 0"),
    ("negative_params", _set("entries.2.params", -1), "$.entries[2].params"),
    ("negative_macs", _set("entries.2.macs", -1), "$.entries[2].macs"),
    ("zero_runs", _set("entries.2.latency_ms.runs", 0), "latency_ms.runs must be >= 1"),
    ("p50_over_p99", _set("entries.2.latency_ms.p50", 1.0), "p50"),
    ("mean_over_max", _set("entries.2.latency_ms.mean", 100.0), "latency_ms.mean"),
    ("negative_load", _set("entries.2.load_ms", -3.0), "load_ms"),
    ("negative_memory", _set("entries.2.peak_memory_mib", -1.0), "peak_memory_mib"),
    ("unknown_precision", _set("entries.2.precision", "int9"), "$.entries[2].precision"),
    ("confusion_not_square", _set("entries.2.accuracy.confusion", [[40]]), "confusion must be 2 x 2"),
    ("confusion_negative", _set("entries.2.accuracy.confusion", [[41, -1], [0, 0]]), "confusion[0][1]"),
    ("confusion_wrong_total", _set("entries.2.accuracy.confusion", [[1, 0], [0, 1]]), "counts 2 frames"),
    ("n_not_dataset_n", _set("entries.2.accuracy.n", 39), "$.dataset.n is 40"),
    ("unknown_class", _set("entries.2.accuracy.per_class", {"FM": 0.5}), "not in $.dataset.class_names"),
    ("stray_snr", _set("entries.2.accuracy.per_snr", {"99": 0.5}), "not in $.dataset.snrs"),
    ("no_entries", _set("entries", []), "$.entries is empty"),
    ("zero_frames", _set("dataset.n", 0), "$.dataset.n must be >= 1"),
    ("no_classes", _set("dataset.class_names", []), "$.dataset.class_names"),
    ("zero_batch", _set("settings.batch_size", 0), "$.settings.batch_size"),
    ("negative_threads", _set("settings.threads", -2), "$.settings.threads"),
    (
        "teacher_accuracy_above_1",
        _set("teacher", {"path": "t.pt", "sha256": "0", "accuracy": 1.2}),
        "teacher",
    ),
    ("bad_created", _set("created", "yesterday"), "$.created"),
    ("wrong_schema", _set("schema", "edgekd.gate/1"), "not an edgekd bench document"),
    ("future_schema", _set("schema", "edgekd.bench/9"), "edgekd.bench/9"),
    (
        "zero_peak",
        _set("roofline", {"peak_gflops": 0, "gemm_n": 8, "repeats": 1, "gemm_ms": 1.0}),
        "peak_gflops",
    ),
]
# (id, raw file text, fragment)
TEXT_CASES = [
    ("not_json", "this is not json", "not valid JSON"),
    ("truncated", json.dumps(sample_doc())[:300], "not valid JSON"),
    ("empty", "", "not valid JSON"),
    ("nan_literal", json.dumps(sample_doc()).replace('"cv": 0.05', '"cv": NaN', 1), "latency_ms.cv"),
    ("infinity_literal", json.dumps(sample_doc()).replace('"p99": ', '"p99": Infinity, "x": ', 1), "p99"),
    ("huge_number", json.dumps(sample_doc()).replace('"load_ms": 12.5', '"load_ms": 1e999', 1), "load_ms"),
    (
        "huge_integer",
        json.dumps(sample_doc()).replace('"params": 12345', '"params": ' + "9" * 5000, 1),
        "JSON",
    ),
    ("deeply_nested", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("deeply_nested_objects", '{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    ("a_list", "[1, 2, 3]", "JSON object"),
    ("a_string", '"edgekd.bench/1"', "JSON object"),
    ("duplicate_key", json.dumps(sample_doc()).replace('"name": ', '"name": "x", "name": ', 1), "twice"),
    ("binary", "\udcff\udcfe", "cannot read"),
]


def _gate(tmp_path: Path, result: Path, baseline: Path | None = None) -> tuple[int, str]:
    target = tmp_path / "t.yaml"
    target.write_text(TARGET)
    argv = ["gate", str(result), "--target", str(target)]
    if baseline is not None:
        argv += ["--baseline", str(baseline)]
    res = CliRunner().invoke(cli, argv)
    return res.exit_code, res.stderr + res.stdout


def _assert_refused(code: int, output: str, path: Path, fragment: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert str(path) in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in output


def test_the_sample_document_passes(tmp_path: Path) -> None:
    good = tmp_path / "bench.json"
    good.write_text(json.dumps(sample_doc()))
    code, output = _gate(tmp_path, good, baseline=good)
    assert code == 0, output


@pytest.mark.parametrize(
    ("mutate", "fragment"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
@pytest.mark.parametrize("role", ["result", "baseline"])
def test_a_bad_field_is_exit_2_naming_file_and_field(
    tmp_path: Path, role: str, mutate, fragment: str
) -> None:
    doc = copy.deepcopy(sample_doc())
    mutate(doc)
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps(doc))
    good.write_text(json.dumps(sample_doc()))
    code, output = _gate(tmp_path, bad, good) if role == "result" else _gate(tmp_path, good, bad)
    _assert_refused(code, output, bad, fragment)


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
@pytest.mark.parametrize("role", ["result", "baseline"])
def test_a_broken_file_is_exit_2_naming_it(tmp_path: Path, role: str, text: str, fragment: str) -> None:
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    good.write_text(json.dumps(sample_doc()))
    code, output = _gate(tmp_path, bad, good) if role == "result" else _gate(tmp_path, good, bad)
    _assert_refused(code, output, bad, fragment)


def test_update_baseline_leaves_a_broken_baseline_untouched(tmp_path: Path) -> None:
    bad, good = tmp_path / "base.json", tmp_path / "good.json"
    bad.write_text('{"schema": "edgekd.bench/1", "entries": [')
    good.write_text(json.dumps(sample_doc()))
    target = tmp_path / "t.yaml"
    target.write_text(TARGET)
    res = CliRunner().invoke(
        cli, ["gate", str(good), "--target", str(target), "--baseline", str(bad), "--update-baseline"]
    )
    assert res.exit_code == 2 and str(bad) in res.stderr
    assert bad.read_text() == '{"schema": "edgekd.bench/1", "entries": ['


def test_a_result_must_fit_the_targets_input_shape(tmp_path: Path) -> None:
    doc = copy.deepcopy(sample_doc())
    doc["dataset"]["input_shape"] = [2, 128]
    doc["entries"][2]["input_shape"] = [None, 2, 128]
    result = tmp_path / "bench.json"
    result.write_text(json.dumps(doc))
    target = tmp_path / "t.yaml"
    for shape, code_wanted in (("[1, 2, 128]", 0), ("[1, 2, 64]", 2), ("[1, 4, 2, 128]", 2)):
        target.write_text(TARGET + f"input_shape: {shape}\n")
        res = CliRunner().invoke(cli, ["gate", str(result), "--target", str(target)])
        assert res.exit_code == code_wanted, res.output
        if code_wanted:
            assert str(result) in res.stderr and shape in res.stderr and "Traceback" not in res.output
    doc["dataset"].pop("input_shape")
    doc["entries"][2]["input_shape"] = [4, 2, 128]  # a static batch of 4 for a batch-1 target
    result.write_text(json.dumps(doc))
    target.write_text(TARGET + "input_shape: [1, 2, 128]\n")
    res = CliRunner().invoke(cli, ["gate", str(result), "--target", str(target)])
    assert res.exit_code == 2 and "batch 4" in res.stderr, res.output


def test_a_missing_entry_names_the_files(tmp_path: Path) -> None:
    result = tmp_path / "bench.json"
    result.write_text(json.dumps(sample_doc()))
    target = tmp_path / "ov.yaml"
    target.write_text("name: ov\nruntime: openvino\nprecision: fp32\nbudgets: {min_accuracy: 0.5}\n")
    res = CliRunner().invoke(cli, ["gate", str(result), "--target", str(target)])
    assert res.exit_code == 2 and str(result) in res.stderr and "openvino/fp32" in res.stderr
    base = copy.deepcopy(sample_doc())
    base["entries"] = [e for e in base["entries"] if e["id"] != "onnxruntime/int8"]
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(base))
    target.write_text(TARGET)
    res = CliRunner().invoke(cli, ["gate", str(result), "--target", str(target), "--baseline", str(baseline)])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and str(baseline) in lines[0], res.output
