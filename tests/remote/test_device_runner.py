"""The device runner: self-contained (no edgekd, no torch), and the one implementation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench import accuracy, environment, latency
from edgekd.bench.runner import BenchCandidate, BenchConfig
from edgekd.data.dataset import ArrayDataset
from edgekd.remote import device_runner
from edgekd.remote.bench import stage_job
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts

# Run the runner the way a device would, with edgekd and torch made unimportable.
_BLOCKED = (
    "import runpy, sys\n"
    "for name in ('edgekd', 'torch'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_edgekd_uses_the_runner_functions() -> None:
    """One implementation: the local harness calls the very functions the device runs."""
    assert latency.time_calls is device_runner.time_calls
    assert latency.latency_summary is device_runner.latency_summary
    assert accuracy.predict_classes is device_runner.predict_classes
    assert environment.cpu_fingerprint is device_runner.cpu_fingerprint


def test_runner_runs_without_edgekd_or_torch(tiny: TinyArtifacts, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    dataset = ArrayDataset(x=tiny.frames, y=np.arange(16) % NUM_CLASSES, class_names=list("ABCD"))
    cfg = BenchConfig(roofline=False, threads=1)
    cfg.latency.min_runs, cfg.latency.min_seconds, cfg.latency.warmup_seconds = 5, 0.0, 0.0
    stage_job(
        [BenchCandidate("onnxruntime", "fp32", tiny.onnx), BenchCandidate("openvino", "int8", tiny.xml)],
        dataset,
        cfg,
        job_dir,
    )
    runner = job_dir / "device_runner.py"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED, str(runner), str(job_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ort, ov = result["results"]
    assert ort["status"] == "ok" and ov["status"] == "ok", (ort, ov)
    assert ort["latency"]["runs"] >= 5 and len(ort["predictions"]) == 16
    assert ort["output_width"] == NUM_CLASSES and ort["executed_precision"] is None  # host reads the graph
    assert ov["executed_precision"] == "fp32"  # an fp32 IR asked for int8 still computes in fp32
    assert ort["predictions"] == ov["predictions"]
    assert result["environment"]["libraries"]["openvino"]
    assert not job_dir.exists()  # the runner removes its folder


def test_runner_reports_a_broken_job_in_one_line(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.json").write_text("{not json")
    runner = Path(device_runner.__file__)
    proc = subprocess.run(
        [sys.executable, str(runner), str(job_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgekd device runner: JSONDecodeError") and proc.stderr.count("\n") == 1
    assert not job_dir.exists()


def test_gemm_peak_and_roofline_fields() -> None:
    peak = device_runner.gemm_peak(n=256, repeats=3)
    assert peak["peak_gflops"] == pytest.approx(2 * 256**3 / (peak["gemm_ms"] * 1e6))
    fields = device_runner.roofline_fields(macs=1_000_000, batch_size=4, p50_ms=2.0, peak_gflops=8.0)
    assert fields["achieved_gflops"] == pytest.approx(2 * 1e6 * 4 / 2e-3 / 1e9)  # 4 GFLOP/s
    assert fields["fraction_of_peak"] == pytest.approx(0.5)
    assert device_runner.roofline_fields(None, 1, 2.0, 8.0) == {
        "achieved_gflops": None,
        "fraction_of_peak": None,
    }


def test_peak_memory_sees_a_fresh_allocation() -> None:
    with device_runner.PeakMemory() as memory:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        del block
    if memory.delta_mib is None:
        pytest.skip("no /proc/self/status or getrusage here")
    assert memory.delta_mib >= 48


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no os.sched_setaffinity (not Linux)")
def test_pinned_cpus_restores_affinity() -> None:
    before = os.sched_getaffinity(0)
    one = min(before)
    with device_runner.PinnedCpus([one]):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="cannot pin"), device_runner.PinnedCpus([10_000]):
        pass
