"""The device runner: the runtime package runs without edgekd or torch, and is the one implementation."""

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
from edgekd.remote.staging import PACKAGE, stage_job
from edgekd.runtime import device_runner, inputs, machine, timing
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts

# Run the shipped package the way a device does (python -m PACKAGE.device_runner with the job
# folder on the path), with edgekd and torch made unimportable.
_BLOCKED = (
    "import runpy, sys\n"
    "for name in ('edgekd', 'torch'):\n"
    "    sys.modules[name] = None\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "sys.argv = [sys.argv[0], *sys.argv[1:]]\n"
    f"runpy.run_module('{PACKAGE}.device_runner', run_name='__main__', alter_sys=True)\n"
)


def test_edgekd_uses_the_runner_functions() -> None:
    """One implementation: the local harness calls the very functions the device runs."""
    assert latency.time_calls is timing.time_calls is device_runner.time_calls
    assert latency.latency_summary is timing.latency_summary is device_runner.latency_summary
    assert accuracy.predict_classes is inputs.predict_classes is device_runner.predict_classes
    assert environment.cpu_fingerprint is machine.cpu_fingerprint


def test_the_runtime_package_is_a_leaf() -> None:
    """Only relative imports inside the package, and nothing but stdlib/numpy at module level."""
    import ast

    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for source in device_runner.PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in tree.body:  # module level only: runtimes are imported inside functions
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (source, node.module)
            elif isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] in allowed for alias in node.names), source
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("edgekd"), (source, node.module)


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
    assert (job_dir / PACKAGE / "device_runner.py").is_file()  # the package itself is shipped
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED, str(job_dir)],
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
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd.runtime.device_runner", str(job_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgekd device runner: JSONDecodeError") and proc.stderr.count("\n") == 1
    assert not job_dir.exists()


def test_gemm_peak_and_roofline_fields() -> None:
    peak = machine.gemm_peak(n=256, repeats=3)
    assert peak["peak_gflops"] == pytest.approx(2 * 256**3 / (peak["gemm_ms"] * 1e6))
    fields = machine.roofline_fields(macs=1_000_000, batch_size=4, p50_ms=2.0, peak_gflops=8.0)
    assert fields["achieved_gflops"] == pytest.approx(2 * 1e6 * 4 / 2e-3 / 1e9)  # 4 GFLOP/s
    assert fields["fraction_of_peak"] == pytest.approx(0.5)
    assert machine.roofline_fields(None, 1, 2.0, 8.0) == {
        "achieved_gflops": None,
        "fraction_of_peak": None,
    }


def test_peak_memory_sees_a_fresh_allocation() -> None:
    with machine.PeakMemory() as memory:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        del block
    if memory.delta_mib is None:
        pytest.skip("no /proc/self/status or getrusage here")
    assert memory.delta_mib >= 48


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no os.sched_setaffinity (not Linux)")
def test_pinned_cpus_restores_affinity() -> None:
    before = os.sched_getaffinity(0)
    one = min(before)
    with machine.PinnedCpus([one]):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="cannot pin"), machine.PinnedCpus([10_000]):
        pass
