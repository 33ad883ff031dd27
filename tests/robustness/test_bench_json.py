"""bench.json results and baselines: broken and valid documents through ``edgekd gate``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix

E = "entries[onnxruntime/fp32]"  # the entry the robust target judges


def _set(path: str, value):
    return lambda doc: mut.json_set(doc, path, value)


def _delete(path: str):
    return lambda doc: mut.json_delete(doc, path)


def _duplicate_entry(doc: dict) -> dict:
    out = mut.json_set(doc, "name", doc["name"])
    out["entries"].append(
        json.loads(json.dumps(next(e for e in out["entries"] if e["id"] == "onnxruntime/fp32")))
    )
    return out


def _teacher(accuracy: float):
    return lambda doc: {**doc, "teacher": {"path": "teacher.pt", "sha256": "0" * 64, "accuracy": accuracy}}


DOC = {
    "schema-foreign": _set("schema", "other.tool/1"),
    "schema-v9": _set("schema", "edgekd.bench/9"),
    "missing-schema": _delete("schema"),
    "missing-entries": _delete("entries"),
    "entries-object": _set("entries", {}),
    "entries-empty": _set("entries", []),
    "missing-dataset": _delete("dataset"),
    "missing-p50": _delete(f"{E}.latency_ms.p50"),
    "p50-string": _set(f"{E}.latency_ms.p50", "fast"),
    "p50-nan": _set(f"{E}.latency_ms.p50", float("nan")),
    "p90-infinity": _set(f"{E}.latency_ms.p90", float("inf")),
    "p50-negative": _set(f"{E}.latency_ms.p50", -1.0),
    "p90-negative": _set(f"{E}.latency_ms.p90", -0.5),
    "p50-above-max": _set(f"{E}.latency_ms.p50", 1e6),
    "runs-zero": _set(f"{E}.latency_ms.runs", 0),
    "runs-negative": _set(f"{E}.latency_ms.runs", -5),
    "std-negative": _set(f"{E}.latency_ms.std", -1.0),
    "throughput-negative": _set(f"{E}.latency_ms.throughput_per_s", -3.0),
    "load_ms-negative": _set(f"{E}.load_ms", -10.0),
    "accuracy-above-1": _set(f"{E}.accuracy.overall", 1.5),
    "accuracy-percent": _set(f"{E}.accuracy.overall", 25.0),
    "accuracy-negative": _set(f"{E}.accuracy.overall", -0.1),
    "accuracy-string": _set(f"{E}.accuracy.overall", "25%"),
    "per_class-above-1": _set(f"{E}.accuracy.per_class.BPSK", 2.0),
    "per_snr-above-1": _set(f"{E}.accuracy.per_snr.0", 1.5),
    "per_class-unknown-class": _set(f"{E}.accuracy.per_class.NOPE", 0.5),
    "confusion-negative": _set(f"{E}.accuracy.confusion.0.0", -3),
    "confusion-miscounts": _set(f"{E}.accuracy.confusion.0.1", 400),
    "accuracy-n-negative": _set(f"{E}.accuracy.n", -16),
    "agreement-above-1": _set(f"{E}.agreement_with_reference", 1.2),
    "size-negative": _set(f"{E}.artifact.size_bytes", -1),
    "params-negative": _set(f"{E}.params", -6148),
    "macs-negative": _set(f"{E}.macs", -1),
    "peak-memory-negative": _set(f"{E}.peak_memory_mib", -10.0),
    "status-invalid": _set(f"{E}.status", "great"),
    "ok-without-latency": _set(f"{E}.latency_ms", None),
    "id-mismatch": _set(f"{E}.id", "onnxruntime/int8"),
    "duplicate-entry": _duplicate_entry,
    "dataset-n-negative": _set("dataset.n", -16),
    "teacher-accuracy-above-1": _teacher(1.7),
}
TEXT = ["truncate-10pct", "truncate-50pct", "truncate-99pct", "empty-file", "garbage", "text-file"]
TEXT += ["list-doc", "deep-nesting", "utf16-file"]
ALL = TEXT + list(DOC)
SLOT = {"gate": "result", "gate-baseline": "baseline", "gate-update-baseline": "result"}
CASES = matrix("bench.json", ALL, ["gate", "gate-baseline"])
CASES += matrix("bench.json", ["truncate-50pct", "p50-negative", "accuracy-above-1", "entries-empty"],
                ["gate-update-baseline"])  # fmt: skip
VALID = [case("bench.json", e, "accept", f"valid-{e}", "valid", e) for e in SLOT]


def write_mutation(name: str, valid_bench: Path, dest: Path) -> Path:
    text = valid_bench.read_text()
    if name == "valid":
        dest.write_text(text)
    elif name in DOC:
        dest.write_bytes(mut.dumps(DOC[name](json.loads(text))))
    elif name.startswith("truncate-"):
        dest.write_text(text[: int(len(text) * int(name.split("-")[1].rstrip("pct")) / 100)])
    else:
        dest.write_bytes(
            {
                "empty-file": lambda: b"",
                "garbage": mut.garbage,
                "text-file": lambda: b"p50: 1.2 ms\n",
                "list-doc": lambda: b"[]",
                "deep-nesting": lambda: ("[" * 100_000 + "]" * 100_000).encode(),
                "utf16-file": lambda: text.encode("utf-16"),
            }[name]()
        )
    return dest


def _slots(entry: str, path: Path, valid, box) -> dict:
    slots = {SLOT[entry]: path}
    if entry == "gate-update-baseline":
        baseline = box.dir / "baseline.json"
        shutil.copy(valid.root / "baseline.json", baseline)  # must stay as it is when RESULT is refused
        slots["baseline"] = baseline
    return slots


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_bench_json_refused(valid, valid_bench, box, mutation, entry):
    bad = write_mutation(mutation, valid_bench, box.dir / f"{mutation}.json")
    expect_refusal(box, argv(entry, valid, box, **_slots(entry, bad, valid, box)), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_bench_json_accepted(valid, valid_bench, box, mutation, entry):
    good = write_mutation(mutation, valid_bench, box.dir / "bench-copy.json")
    expect_acceptance(box, argv(entry, valid, box, **_slots(entry, good, valid, box)))
