"""The bench takes an executor: where candidates run is behind one interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.entries import empty_entry
from edgekd.bench.executor import LocalExecutor, Measured
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, BenchFailed, run_bench
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError
from edgekd.remote import SshExecutor, executor_for
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts


class RecordingExecutor:
    """Answers every candidate as failed (or ok with fixed figures) and records what it was given."""

    def __init__(self, ok: bool) -> None:
        self.ok, self.seen = ok, []

    def measure(self, candidates, dataset, cfg, out_dir, say) -> Measured:
        self.seen = [c.id for c in candidates]
        entries, preds = [], {}
        for cand in candidates:
            entry = empty_entry(cand, out_dir, cfg)
            if self.ok:
                entry.update(status="ok", latency_ms={"p50": 1.0}, accuracy={"overall": 1.0})
                preds[cand.id] = np.zeros(len(dataset), dtype=np.int64)
            else:
                entry.update(reason="broken on purpose")
            entries.append(entry)
        return Measured(entries, preds, {"host": "fake"}, None)


def _dataset(tiny: TinyArtifacts) -> ArrayDataset:
    return ArrayDataset(x=tiny.frames, y=np.arange(16) % NUM_CLASSES, class_names=list("ABCD"))


def test_run_bench_builds_the_document_from_any_executor(tiny: TinyArtifacts, tmp_path: Path) -> None:
    executor = RecordingExecutor(ok=True)
    cands = [BenchCandidate("onnxruntime", "fp32", tiny.onnx), BenchCandidate("openvino", "fp32", tiny.xml)]
    doc = run_bench(
        cands, _dataset(tiny), BenchConfig(roofline=False), name="x", out_dir=tmp_path,
        reference_id="onnxruntime/fp32", executor=executor,
    )  # fmt: skip
    assert executor.seen == ["onnxruntime/fp32", "openvino/fp32"]
    assert doc["environment"] == {"host": "fake"}
    assert [e["agreement_with_reference"] for e in doc["entries"]] == [1.0, 1.0]
    failing = RecordingExecutor(ok=False)
    with pytest.raises(BenchFailed, match="broken on purpose"):  # judged by the harness, not the executor
        run_bench(
            cands, _dataset(tiny), BenchConfig(roofline=False), name="x", out_dir=tmp_path, executor=failing
        )


def test_executor_for_picks_by_host() -> None:
    assert isinstance(executor_for("local"), LocalExecutor)
    remote = executor_for("ssh://pi@device:2222", remote_python="python3.11")
    assert isinstance(remote, SshExecutor) and remote.target.port == 2222
    with pytest.raises(ConfigError, match="not an ssh URL"):
        executor_for("ftp://device")
    with pytest.raises(ConfigError, match="absolute folder"):
        SshExecutor("ssh://device", remote_tmp="tmp")


def test_the_local_executor_is_the_default(tiny: TinyArtifacts, tmp_path: Path) -> None:
    fast = LatencyConfig(warmup_runs=1, warmup_seconds=0.0, min_runs=2, min_seconds=0.0)
    cfg = BenchConfig(latency=fast, roofline=False, threads=1)
    doc = run_bench(
        [BenchCandidate("onnxruntime", "fp32", tiny.onnx)], _dataset(tiny), cfg, name="x", out_dir=tmp_path
    )
    assert doc["entries"][0]["status"] == "ok" and "host" not in doc["environment"]
