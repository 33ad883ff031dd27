"""Dynamic INT8 only where it pays: measured against FP32 and static INT8, refused for conv nets."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from edgekd.export.onnx_export import ExportConfig, export_onnx, run_onnxruntime
from edgekd.quantize.dynamic import DynamicNotWorthIt, measure_dynamic, quantize_onnx_dynamic
from tests.export.tiny_nets import iq_frames, trained_net


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dyn")
    frames = iq_frames(16, seed=2)[0]
    conv = folder / "conv.onnx"
    export_onnx(trained_net("conv"), frames, conv, ExportConfig())
    torch.manual_seed(0)
    mlp_net = nn.Sequential(
        nn.Flatten(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 4)
    )
    mlp = folder / "mlp.onnx"
    export_onnx(mlp_net, frames, mlp, ExportConfig())
    return conv, mlp, iq_frames(32, seed=5)[0]


def test_conv_net_is_refused_with_the_measured_figures(tmp_path, models):
    conv, _, calib = models
    out = tmp_path / "dyn.onnx"
    with pytest.raises(
        DynamicNotWorthIt, match=r"refused for a conv net \(2 Conv run as ConvInteger\)"
    ) as info:
        quantize_onnx_dynamic(conv, out, calib)
    line = info.value.one_line()
    assert "FP32 " in line and "static INT8 " in line and "dynamic INT8 " in line and " ms" in line
    assert list(tmp_path.iterdir()) == []


def test_verdict_follows_the_measurement_when_conv_is_allowed(tmp_path, models):
    conv, _, calib = models
    verdict = measure_dynamic(conv, calib, allow_conv=True, rounds=5, keep_dynamic=tmp_path / "d.onnx")
    assert set(verdict.timings_ms) == {"fp32", "static", "dynamic"} and verdict.conv_nodes == 2
    assert verdict.allowed == (verdict.timings_ms["fp32"] > verdict.timings_ms["dynamic"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "d.onnx")).graph.node}
    assert "ConvInteger" in ops  # what makes conv nets slow under dynamic quantization


def test_matmul_net_gets_dynamic_int8_only_if_measured_faster(tmp_path, models):
    _, mlp, calib = models
    out = tmp_path / "mlp.dyn.onnx"
    try:
        verdict = quantize_onnx_dynamic(mlp, out, calib)
    except DynamicNotWorthIt as exc:
        assert "not faster than FP32" in exc.one_line() and not out.exists()
        return
    assert verdict.allowed and verdict.conv_nodes == 0 and verdict.matmul_nodes == 3
    assert verdict.timings_ms["dynamic"] < verdict.timings_ms["fp32"] and "faster than FP32" in verdict.reason
    frames = iq_frames(64, seed=6)[0]
    assert run_onnxruntime(out, frames).shape == (64, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.dyn.onnx"]
