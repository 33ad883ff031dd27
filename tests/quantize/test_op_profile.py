"""Where ORT's time goes, by kind of node: convolutions told apart, INT8 ops named, steady runs only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.op_profile import node_kinds, time_by_kind
from edgekd.quantize.ort_static import quantize_onnx_static


def _mobile_block() -> nn.Module:
    """First conv over 3 channels, a depthwise 3x3, a pointwise 1x1, a dense 3x3, a head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, 1, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    ).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    frames = np.random.default_rng(0).normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    fp32 = folder / "block.onnx"
    export_onnx(_mobile_block(), frames[:4], fp32, ExportConfig())
    int8 = folder / "block.int8.onnx"
    quantize_onnx_static(fp32, int8, frames, QuantizeConfig(activation_type="uint8", reduce_range=False))
    return fp32, int8, frames[:1]


def test_fp32_convolutions_are_told_apart(models):
    fp32, _, frame = models
    times = time_by_kind(fp32, frame, threads=1, runs=5)
    convs = {"conv first", "conv depthwise", "conv pointwise", "conv dense"}
    assert convs <= set(times), times
    assert all(ms > 0 for ms in times.values())
    assert not {"QLinearConv", "QuantizeLinear"} & set(times)


def test_int8_graph_shows_its_integer_convolutions_and_quantize_nodes(models):
    _, int8, frame = models
    times = time_by_kind(int8, frame, threads=1, runs=5)
    assert {"conv first", "conv depthwise", "conv pointwise", "conv dense"} <= set(times), times
    assert "QuantizeLinear" in times  # the float image is quantized once at the input
    assert list(times.values()) == sorted(times.values(), reverse=True)  # slowest kind first


def test_node_kinds_names_the_first_convolution_by_position(models):
    import onnx

    fp32, _, _ = models
    kinds = node_kinds(onnx.load(fp32))
    convs = [kind for kind in kinds.values() if kind.startswith("conv")]
    assert convs == ["conv first", "conv depthwise", "conv pointwise", "conv dense"]


def test_warm_up_runs_are_left_out():
    from edgekd.quantize.op_profile import _steady_runs

    def node(dur):
        return {"cat": "Node", "name": "conv_kernel_time", "dur": dur, "args": {"op_name": "Conv"}}

    run = {"cat": "Session", "name": "model_run"}
    # ORT writes a run's node events before that run's model_run event.
    events = [node(900), run, node(800), run, node(5), node(6), run]
    assert [e["dur"] for e in _steady_runs(events, skip=2)] == [5, 6]
