"""Accuracy-aware INT8: per-layer SQNR finds a deliberately broken layer, and only the layers
around it are kept in float until the accuracy budget holds."""

from __future__ import annotations

import json

import pytest
import torch

from edgekd.errors import ConfigError, ParityError
from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.accuracy_aware import labelled_accuracy, quantize_onnx_accuracy_aware
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.coverage import op_coverage
from edgekd.quantize.ort_static import quantize_onnx_static
from edgekd.quantize.sensitivity import node_sensitivity
from tests.export.tiny_nets import accuracy, iq_frames, trained_net

# After ORT pre-processing tiny_nets.conv_net is /0/Conv(+BN+ReLU) -> /3/MaxPool -> /4/Conv -> ... /9/Gemm.
OUTLIER_LAYER = "/0/Conv"
AROUND_OUTLIER = {"/0/Conv", "/3/MaxPool", "/4/Conv"}  # every node that quantizes the outlier tensor


def _outlier_net() -> torch.nn.Module:
    """conv_net whose first block emits one channel of ~3000 that the next conv ignores.

    The float function is unchanged, but per-tensor INT8 of that activation rounds the
    15 ordinary channels (values ~1, step ~12) to zero: accuracy collapses.
    """
    model = trained_net("conv")
    with torch.no_grad():
        model[4].weight[:, 3] = 0.0
        model[1].bias[3] = 3000.0
    return model


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aa")
    model = _outlier_net()
    val_x, val_y = iq_frames(256, seed=9)
    assert accuracy(model, val_x, val_y) == accuracy(trained_net("conv"), val_x, val_y)
    path = folder / "fp32.onnx"
    export_onnx(model, val_x[:32], path, ExportConfig())
    return path, iq_frames(128, seed=5)[0], val_x, val_y


# The outlier sits in the input convolution, which INT8 keeps in float by default: quantize it
# here, so the search has to find it.
CFG = QuantizeConfig(
    activation_type="uint8",
    reduce_range=True,
    max_accuracy_drop=0.02,
    min_top1_agreement=0.9,
    float_input_conv=False,
)


def test_sensitivity_ranks_the_outlier_layer_first(tmp_path, outlier):
    fp32, calib, _, _ = outlier
    full = tmp_path / "full.onnx"
    quantize_onnx_static(fp32, full, calib, CFG)
    ranking = node_sensitivity(full, fp32, calib[:64])
    assert ranking[0].node == OUTLIER_LAYER and ranking[0].sqnr_db < 10  # ordinary channels rounded to 0
    assert {r.node for r in ranking[:3]} == AROUND_OUTLIER
    healthy = [r for r in ranking if r.node not in AROUND_OUTLIER]
    assert healthy and all(r.sqnr_db > 30 for r in healthy)  # ~6 dB per bit: healthy 8-bit tensors


def test_outlier_layers_stay_float_and_accuracy_returns(tmp_path, outlier):
    fp32, calib, val_x, val_y = outlier
    out = tmp_path / "int8.onnx"
    report = quantize_onnx_accuracy_aware(
        fp32, out, calib, CFG, labelled_accuracy(val_x, val_y), eval_samples=val_x
    )

    assert report.fp32_accuracy - report.full_int8_accuracy > 0.3  # the broken layer really breaks INT8
    assert report.steps[0]["excluded"] == OUTLIER_LAYER
    assert report.float_nodes and set(report.float_nodes) <= AROUND_OUTLIER
    assert report.drop <= 0.02
    assert labelled_accuracy(val_x, val_y)(out) == pytest.approx(report.int8_accuracy)
    assert report.quantization.float_nodes == report.float_nodes
    assert OUTLIER_LAYER in report.summary() and "kept in float" in report.summary()
    coverage = op_coverage(out)
    assert "/9/Gemm" not in coverage["float_compute_nodes"]  # unrelated layers stay INT8
    assert set(coverage["float_compute_nodes"]) <= AROUND_OUTLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
    json.dumps(report.to_dict(), allow_nan=False)


def test_healthy_model_keeps_every_layer_int8(tmp_path):
    fp32 = tmp_path / "fp32.onnx"
    val_x, val_y = iq_frames(128, seed=9)
    export_onnx(trained_net("conv"), val_x[:16], fp32, ExportConfig())
    report = quantize_onnx_accuracy_aware(
        fp32, tmp_path / "q.onnx", iq_frames(64, seed=5)[0], CFG, labelled_accuracy(val_x, val_y)
    )
    assert report.float_nodes == [] and report.steps == [] and report.sensitivity == []


def test_budget_out_of_reach_fails_naming_the_layers(tmp_path, outlier):
    fp32, calib, val_x, val_y = outlier
    cfg = QuantizeConfig(
        activation_type="uint8",
        reduce_range=True,
        max_accuracy_drop=0.02,
        max_float_nodes=1,
        float_input_conv=False,
    )
    with pytest.raises(ParityError, match=r"with 1 layer\(s\) in float \(/0/Conv\)") as info:
        quantize_onnx_accuracy_aware(fp32, tmp_path / "q.onnx", calib, cfg, labelled_accuracy(val_x, val_y))
    assert "max_float_nodes" in info.value.one_line()
    assert list(tmp_path.iterdir()) == []


def test_accuracy_aware_config_is_checked():
    with pytest.raises(ConfigError, match=r"needs quantize\.max_accuracy_drop"):
        QuantizeConfig(accuracy_aware=True, max_accuracy_drop=None).validate()
    with pytest.raises(ConfigError, match="max_float_nodes"):
        QuantizeConfig(max_float_nodes=0).validate()
