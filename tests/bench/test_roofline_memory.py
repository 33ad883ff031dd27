"""Roofline, peak memory and CPU pinning in a local bench; additive schema fields."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.html_report import render_html
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchCandidate, BenchConfig, run_bench
from edgekd.bench.schema import validate_bench
from edgekd.bench.table import COLUMNS, bench_markdown, row_cells
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, InputFileError
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts
from tests.bench.sample_doc import sample_doc

FAST = LatencyConfig(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.0, max_seconds=2.0)


def _dataset(tiny: TinyArtifacts) -> ArrayDataset:
    return ArrayDataset(x=tiny.frames, y=np.arange(16) % NUM_CLASSES, class_names=list("ABCD"))


def test_local_bench_reports_roofline_and_memory(tiny: TinyArtifacts, tmp_path: Path) -> None:
    doc = run_bench(
        [
            BenchCandidate("onnxruntime", "fp32", tiny.onnx, macs=30_000),
            BenchCandidate("openvino", "fp32", tiny.xml),  # no MACs known: no roofline figures
        ],
        _dataset(tiny),
        BenchConfig(latency=FAST, threads=1),
        name="roofline",
        out_dir=tmp_path,
        reference_id="onnxruntime/fp32",
    )
    validate_bench(doc)
    peak = doc["roofline"]["peak_gflops"]
    ort, ov = doc["entries"]
    assert peak > 0 and doc["roofline"]["gemm_n"] == 1024
    expected = 2 * 30_000 / (ort["latency_ms"]["p50"] * 1e6)
    assert ort["achieved_gflops"] == pytest.approx(expected)
    assert ort["fraction_of_peak"] == pytest.approx(expected / peak)
    assert ov["achieved_gflops"] is None and ov["fraction_of_peak"] is None
    assert ort["peak_memory_mib"] is not None and ort["peak_memory_mib"] >= 0
    row = dict(zip(COLUMNS, row_cells(ort), strict=True))
    assert row["% peak"] == f"{100 * expected / peak:.2f}"
    assert "GFLOP/s (float32 GEMM)" in bench_markdown(doc)
    page = render_html(doc)
    assert "Roofline: this machine" in page and "peak memory MiB" in page


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no os.sched_setaffinity (not Linux)")
def test_local_bench_pins_and_unpins(tiny: TinyArtifacts, tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    cpus = sorted(before)[:1]
    latency = LatencyConfig(**{**FAST.__dict__, "pin_cpus": cpus})
    # onnxruntime only, no GEMM: a runtime first created while pinned (OpenVINO's Core)
    # would keep seeing one CPU for the rest of the test session.
    doc = run_bench(
        [BenchCandidate("onnxruntime", "fp32", tiny.onnx)],
        _dataset(tiny),
        BenchConfig(latency=latency, threads=1, roofline=False),
        name="pinned",
        out_dir=tmp_path,
    )
    assert doc["entries"][0]["status"] == "ok"
    assert doc["settings"]["pin_cpus"] == cpus and doc["roofline"] is None
    assert os.sched_getaffinity(0) == before  # pinning is undone after the bench


def test_pinning_to_an_absent_cpu_is_a_config_error(tiny: TinyArtifacts, tmp_path: Path) -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no os.sched_setaffinity (not Linux)")
    latency = LatencyConfig(**{**FAST.__dict__, "pin_cpus": [100_000]})
    with pytest.raises(ConfigError, match="cannot pin"):
        run_bench(
            [BenchCandidate("onnxruntime", "fp32", tiny.onnx)],
            _dataset(tiny),
            BenchConfig(latency=latency, roofline=False),
            name="pin",
            out_dir=tmp_path,
        )


def test_additive_fields_are_optional_but_typed() -> None:
    old = sample_doc()  # written before roofline/memory existed: still valid
    validate_bench(old)
    new = copy.deepcopy(old)
    new["roofline"] = {"peak_gflops": 40.0, "gemm_n": 1024, "repeats": 5, "gemm_ms": 53.7}
    new["entries"][0].update(peak_memory_mib=3.5, achieved_gflops=0.5, fraction_of_peak=0.0125)
    validate_bench(new)
    assert "% peak" in bench_markdown(new) and "peak 40.0 GFLOP/s" in bench_markdown(new)
    assert '<td class="num">3.5</td>' in render_html(new)  # peak memory in the details
    new["entries"][0]["fraction_of_peak"] = "1%"
    with pytest.raises(InputFileError, match=r"\$\.entries\[0\]\.fraction_of_peak must be number or null"):
        validate_bench(new)
    new["entries"][0]["fraction_of_peak"] = None
    new["roofline"] = {"peak_gflops": 40.0}
    with pytest.raises(InputFileError, match=r"\$\.roofline\.gemm_n is missing"):
        validate_bench(new)
