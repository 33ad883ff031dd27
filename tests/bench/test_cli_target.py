"""``edgekd bench --target``: each runtime opens with the profile's settings, recorded in bench.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset
from tests.backends.tiny_models import NUM_CLASSES, TinyArtifacts


def test_bench_with_a_target_applies_and_records_its_runtime_settings(
    tiny: TinyArtifacts, tmp_path: Path
) -> None:
    data = tmp_path / "data.npz"
    ArrayDataset(
        x=tiny.frames, y=np.arange(len(tiny.frames)) % NUM_CLASSES, class_names=list("ABCD")
    ).save_npz(data)
    target = tmp_path / "target.yaml"
    target.write_text(
        "name: tuned\nruntime: openvino\nthreads: 1\n"
        "openvino: {performance_hint: LATENCY, num_streams: 1}\n"
        "onnxruntime: {execution_mode: sequential, graph_optimization_level: basic}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            str(tiny.onnx),
            f"openvino/fp32={tiny.xml}",
            "--data",
            str(data),
            "--target",
            str(target),
            "--min-runs",
            "3",
            "--min-seconds",
            "0",
            "--reference",
            "onnxruntime/fp32",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "bench.json").read_text())
    assert doc["target"] == "tuned"
    by_id = {e["id"]: e for e in doc["entries"]}
    assert by_id["onnxruntime/fp32"]["status"] == by_id["openvino/fp32"]["status"] == "ok"
    assert by_id["onnxruntime/fp32"]["session_options"] == {
        "threads": 1,
        "device": "CPU",
        "extra": {"execution_mode": "sequential", "graph_optimization_level": "basic"},
    }
    assert by_id["openvino/fp32"]["session_options"]["extra"] == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }


def test_bench_with_an_unknown_target_is_one_line(tiny: TinyArtifacts, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", str(tiny.onnx), "--data", str(tmp_path / "d.npz"), "--target", "no-such-target"]
    )
    assert result.exit_code == 2
    assert "no-such-target" in result.output and "Traceback" not in result.output
