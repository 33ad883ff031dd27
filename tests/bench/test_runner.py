"""End to end on the tiny model: real backends, one unavailable runtime, one broken artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.backends.base import BACKENDS, Backend, Session, SessionOptions
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, artifact_record, run_bench
from edgekd.bench.schema import find_entry, load_bench, validate_bench, write_bench
from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts, build_checkpoint_artifacts

FAST = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.0, max_seconds=2.0)


class GhostBackend(Backend):
    """A registered runtime that is not installed: the harness must skip it, not fake it."""

    name = "ghost"
    suffixes = (".onnx",)

    def _probe(self) -> str | None:
        return "ghostrt is not installed: pip install ghostrt"

    def _load(self, path: Path, options: SessionOptions) -> Session:
        raise AssertionError("an unavailable backend must never load")


@pytest.fixture
def ghost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS._items, "ghost", GhostBackend())  # removed again after the test


def _dataset(tiny: TinyArtifacts) -> ArrayDataset:
    rng = np.random.default_rng(3)
    x = np.concatenate([tiny.frames, tiny.frames[::-1] * 0.5])
    return ArrayDataset(
        x=x,
        y=rng.integers(0, NUM_CLASSES, len(x)),
        class_names=["A", "B", "C", "D"],
        snr=np.tile([-4, 0, 4, 8], 8),
    )


def test_run_bench(tiny: TinyArtifacts, tmp_path: Path, ghost: None) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    candidates = [
        BenchCandidate("onnxruntime", "fp32", tiny.onnx, params=400),
        BenchCandidate("onnxruntime", "int8", tiny.onnx_int8),
        BenchCandidate("openvino", "fp32", tiny.xml),
        BenchCandidate("ghost", "fp32", tmp_path / "never_built.onnx"),  # skipped, not "missing file"
        BenchCandidate("openvino", "int8", corrupt),
    ]
    lines: list[str] = []
    cfg = BenchConfig(
        latency=FAST, threads=1, accuracy_batch_size=8, backends=["onnxruntime/fp32"], keep_going=True
    )
    doc = run_bench(
        candidates,
        _dataset(tiny),
        cfg,
        name="tiny",
        out_dir=tmp_path,
        reference_id="onnxruntime/fp32",
        log=lines.append,
        dataset_name="synthetic",
    )
    validate_bench(doc)
    status = {e["id"]: e["status"] for e in doc["entries"]}
    assert status == {
        "onnxruntime/fp32": "ok",
        "onnxruntime/int8": "ok",
        "openvino/fp32": "ok",
        "ghost/fp32": "skipped",
        "openvino/int8": "failed",
    }

    ghost_entry = find_entry(doc, "ghost", "fp32")
    assert "pip install ghostrt" in ghost_entry["reason"]
    assert ghost_entry["latency_ms"] is None and ghost_entry["accuracy"] is None
    corrupt_reason = find_entry(doc, "openvino", "int8")["reason"]
    assert "corrupt.onnx is not a readable ONNX model" in corrupt_reason

    ref = find_entry(doc, "onnxruntime", "fp32")
    assert ref["agreement_with_reference"] == 1.0
    assert ref["params"] == 400 and ref["executed_precision"] == "fp32"
    assert ref["latency_ms"]["runs"] >= 5 and ref["load_ms"] > 0
    assert find_entry(doc, "openvino", "fp32")["agreement_with_reference"] == 1.0  # same fp32 math
    int8 = find_entry(doc, "onnxruntime", "int8")
    assert int8["executed_precision"] == "int8" and 0.0 <= int8["agreement_with_reference"] <= 1.0
    assert ref["accuracy"]["n"] == 32 and set(ref["accuracy"]["per_snr"]) == {"-4", "0", "4", "8"}

    assert doc["dataset"] == {
        "name": "synthetic",
        "split": "test",
        "n": 32,
        "input_shape": [2, 128],
        "class_names": ["A", "B", "C", "D"],
        "snrs": [-4, 0, 4, 8],
    }
    assert doc["settings"]["threads"] == 1 and doc["settings"]["min_runs"] == 5
    assert any("skipped" in line for line in lines)
    write_bench(doc, tmp_path / "bench.json")
    assert load_bench(tmp_path / "bench.json")["entries"][0]["id"] == "onnxruntime/fp32"


def test_artifact_record_paths_and_ir_size(tiny: TinyArtifacts, tmp_path: Path) -> None:
    inside = artifact_record(tiny.xml, tiny.xml.parent)
    assert inside["path"] == "tiny.xml"
    expected = tiny.xml.stat().st_size + tiny.xml.with_suffix(".bin").stat().st_size
    assert inside["size_bytes"] == expected  # an IR is its .xml and its .bin
    outside = artifact_record(tiny.onnx, tmp_path)
    assert Path(outside["path"]).is_absolute()
    missing = artifact_record(tmp_path / "gone.onnx", tmp_path)
    assert missing == {"path": "gone.onnx", "sha256": None, "size_bytes": None}


def test_bench_config() -> None:
    cfg = from_dict(BenchConfig, {"latency": {"min_runs": 10}, "threads": 2, "backends": ["openvino/fp32"]})
    assert cfg.latency.min_runs == 10 and cfg.threads == 2
    assert BenchConfig().backends == ["torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32"]
    for bad, words in [
        ({"backends": ["onnxruntime"]}, "<backend>/<precision>"),
        ({"backends": ["onnxrt/fp32"]}, "did you mean 'onnxruntime'"),
        ({"backends": ["openvino/fp8"]}, "unknown precision"),
        ({"threads": 0}, "threads"),
        ({"latency": {"batch_size": 0}}, "batch_size"),
    ]:
        with pytest.raises(ConfigError) as info:
            from_dict(BenchConfig, bad)
        assert words in info.value.one_line()


def test_duplicate_candidates(tiny: TinyArtifacts, tmp_path: Path) -> None:
    twice = [BenchCandidate("onnxruntime", "fp32", tiny.onnx)] * 2
    with pytest.raises(ConfigError, match="repeat"):
        run_bench(twice, _dataset(tiny), BenchConfig(latency=FAST), name="x", out_dir=tmp_path)


def test_default_reference_is_torch_checkpoint(tiny: TinyArtifacts, tmp_path: Path) -> None:
    pytest.importorskip("edgekd.models.checkpoint")
    cnn = build_checkpoint_artifacts(tmp_path / "models")
    dataset = ArrayDataset(x=tiny.frames, y=np.arange(16) % NUM_CLASSES, class_names=cnn.class_names)
    candidates = [BenchCandidate("torch", "fp32", cnn.pt), BenchCandidate("onnxruntime", "fp32", cnn.onnx)]
    doc = run_bench(candidates, dataset, BenchConfig(latency=FAST, threads=1), name="cnn", out_dir=tmp_path)
    validate_bench(doc)
    assert doc["reference"] == "torch/fp32"
    torch_entry = find_entry(doc, "torch", "fp32")
    assert torch_entry["status"] == "ok", torch_entry["reason"]
    assert torch_entry["artifact"]["path"] == "models/cnn.pt"
    assert find_entry(doc, "onnxruntime", "fp32")["agreement_with_reference"] == 1.0
