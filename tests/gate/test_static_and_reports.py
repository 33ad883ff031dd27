"""Static gates from model files, and the JUnit / Markdown / JSON outputs through the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.cli.main import cli
from edgekd.gate.static import onnx_static_metrics
from edgekd.models.complexity import count_macs, count_params

TARGET = """
name: small-{precision}
runtime: onnxruntime
precision: {precision}
input_shape: [1, 2, 128]
budgets:
  max_size_bytes: {size}
  max_params: 100000
  max_p90_ms: 1.0
"""


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 16, 7, padding=3),
        nn.ReLU(),
        nn.Conv1d(16, 16, 5, padding=2, groups=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(16, 8),
    ).eval()


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("static") / "net.onnx"
    torch.onnx.export(
        _net(),
        (torch.zeros(1, 2, 128),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def test_onnx_static_metrics_match_the_torch_counts(onnx_model):
    metrics = onnx_static_metrics(onnx_model)
    assert metrics["params"] == count_params(_net())
    assert metrics["macs"] == count_macs(_net(), (2, 128))


def test_quantized_onnx_counts_weights_not_qparams(onnx_model, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"input": rng.normal(size=(1, 2, 128)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path / "net.int8.onnx"
    quantize_static(str(onnx_model), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    metrics = onnx_static_metrics(out)
    assert metrics["params"] == count_params(_net())
    assert metrics["macs"] == count_macs(_net(), (2, 128))


def test_static_gate_through_the_cli(onnx_model, tmp_path):
    size = onnx_model.stat().st_size
    runner = CliRunner()
    fits = tmp_path / "fits.yaml"
    fits.write_text(TARGET.format(size=size, precision="fp32"))
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    result = runner.invoke(
        cli,
        ["gate", str(onnx_model), "--target", str(fits), "--junit", str(junit), "--markdown", str(markdown)],
    )
    assert result.exit_code == 0, result.output
    cases = ET.parse(junit).getroot()
    assert cases.get("tests") == "3" and cases.get("failures") == "0" and cases.get("skipped") == "1"
    assert "p90_ms" in markdown.read_text() and "skip" in markdown.read_text()
    too_big = tmp_path / "big.yaml"
    too_big.write_text(TARGET.format(size=size - 1, precision="fp32"))
    result = runner.invoke(cli, ["gate", str(onnx_model), "--target", str(too_big), "--junit", str(junit)])
    assert result.exit_code == 1
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "size_bytes" in failure.get("message")


def _bench_doc(p50: float) -> dict:
    return {
        "schema": "edgekd.bench/1",
        "reference": None,
        "entries": [
            {
                "id": "onnxruntime/int8",
                "status": "ok",
                "artifact": {"size_bytes": 10},
                "params": 5,
                "latency_ms": {"p50": p50, "p90": p50, "mean": p50, "std": 0.01, "runs": 300},
            }
        ],
    }


def test_baseline_update_and_step_summary(tmp_path, monkeypatch):
    """Uses a hand-made document: only gate fields, so it goes through evaluate, not load_bench."""
    from edgekd.gate import evaluate_gate, write_outputs
    from edgekd.targets import load_target

    target_file = tmp_path / "t.yaml"
    target_file.write_text(TARGET.format(size=100, precision="int8") + "  max_latency_regression: 0.1\n")
    target = load_target(target_file)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    verdict = evaluate_gate(_bench_doc(0.5), target, baseline=_bench_doc(0.4), baseline_name="base.json")
    assert not verdict.passed
    write_outputs(verdict, json_path=tmp_path / "v.json")
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "latency_regression" in text and "FAIL" in text
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False
