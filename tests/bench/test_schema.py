from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edgekd.bench.schema import find_entry, load_bench, validate_bench, write_bench
from edgekd.errors import ConfigError, InputFileError
from tests.bench.sample_doc import sample_doc


def _error(doc: Any) -> str:
    with pytest.raises(InputFileError) as info:
        validate_bench(doc)
    return info.value.one_line()


def test_sample_is_valid_and_round_trips(tmp_path: Path) -> None:
    doc = sample_doc()
    validate_bench(doc)
    path = tmp_path / "out" / "bench.json"
    write_bench(doc, path)
    assert load_bench(path) == doc
    assert not list(path.parent.glob("*.tmp"))


def test_extra_fields_are_allowed() -> None:
    doc = sample_doc()
    doc["entries"][0]["energy_mj"] = 1.5  # an additive change keeps edgekd.bench/1
    validate_bench(doc)


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [
        (lambda d: d.pop("dataset"), "$.dataset is missing", "object"),
        (
            lambda d: d["entries"][1]["latency_ms"].pop("p99"),
            "$.entries[1].latency_ms.p99 is missing",
            "number",
        ),
        (lambda d: d["entries"][0]["latency_ms"].update(p50="fast"), "$.entries[0].latency_ms.p50", "number"),
        (lambda d: d["entries"][0].update(params=1.5), "$.entries[0].params", "integer or null"),
        (lambda d: d["entries"][2].update(status="great"), "$.entries[2].status", "one of 'ok'"),
        (lambda d: d["settings"].update(threads="two"), "$.settings.threads", "integer or null"),
        (
            lambda d: d["entries"][0]["latency_ms"].update(cv=float("nan")),
            "$.entries[0].latency_ms.cv",
            "nan",
        ),
        (lambda d: d["entries"][0].update(noisy=1), "$.entries[0].noisy", "boolean or null"),
        (lambda d: d["dataset"]["class_names"].append(3), "$.dataset.class_names[2]", "string"),
        (lambda d: d["entries"][0]["accuracy"]["per_snr"].update({"high": 0.5}), "keys must be integers", ""),
    ],
)
def test_bad_field_is_named(mutate: Any, path: str, expected: str) -> None:
    doc = sample_doc()
    mutate(doc)
    line = _error(doc)
    assert path in line and expected in line


def test_semantic_checks() -> None:
    doc = sample_doc()
    doc["entries"][0]["latency_ms"] = None
    assert "$.entries[0].latency_ms is null but the entry's status is 'ok'" in _error(doc)
    doc = sample_doc()
    doc["entries"][1]["id"] = "torch/fp32"
    assert "$.entries[1].id" in _error(doc)
    doc = sample_doc()
    doc["entries"][3]["reason"] = None
    assert "must say why" in _error(doc)


def test_schema_versions() -> None:
    doc = sample_doc()
    doc["schema"] = "edgekd.bench/2"
    assert "schema edgekd.bench/2; this edgekd reads edgekd.bench/1" in _error(doc)
    doc["schema"] = "edgekd.manifest/1"
    assert "not an edgekd bench document" in _error(doc)
    assert "JSON object" in _error([1, 2])


def test_load_bench_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        load_bench(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "edgekd.bench/1",', encoding="utf-8")
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_bench(broken)
    bad = tmp_path / "bad.json"
    doc = sample_doc()
    del doc["entries"][0]["accuracy"]["overall"]
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        load_bench(bad)
    assert str(bad) in info.value.one_line() and "$.entries[0].accuracy.overall" in info.value.one_line()


def test_write_refuses_an_invalid_doc(tmp_path: Path) -> None:
    doc = copy.deepcopy(sample_doc())
    doc["name"] = None
    with pytest.raises(InputFileError, match=r"\$\.name"):
        write_bench(doc, tmp_path / "bench.json")
    assert not (tmp_path / "bench.json").exists()


def test_find_entry() -> None:
    doc = sample_doc()
    assert find_entry(doc, "onnxruntime", "int8")["executed_precision"] == "int8"
    with pytest.raises(ConfigError) as info:
        find_entry(doc, "openvino", "int8")
    line = info.value.one_line()
    assert "openvino/int8" in line and "torch/fp32, onnxruntime/fp32" in line
