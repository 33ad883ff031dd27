"""Did INT8 help? Speed-up/size verdicts, op coverage counted from the QDQ graph."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import EdgeKDError
from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.assess import assess_int8, model_bytes
from edgekd.quantize.config import NoSpeedupError
from edgekd.quantize.coverage import op_coverage
from edgekd.quantize.ort_static import QuantizeConfig, quantize_onnx_static
from tests.export.tiny_nets import iq_frames, trained_net

# Per-sample MACs of tiny_nets.conv_net on [2, 128] frames: conv 16x2x7 at 128 positions,
# conv 32x16x5 at 64 positions (after MaxPool), Linear 32x4.
CONV_NET_MACS = 16 * 2 * 7 * 128 + 32 * 16 * 5 * 64 + 32 * 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assess")
    fp32 = folder / "fp32.onnx"
    export_onnx(trained_net("conv"), iq_frames(16, seed=2)[0], fp32, ExportConfig())
    int8 = folder / "int8.onnx"
    # Everything in INT8 (the input convolution too), so the counts below are the whole net's.
    cfg = QuantizeConfig(activation_type="uint8", reduce_range=True, float_input_conv=False)
    report = quantize_onnx_static(fp32, int8, iq_frames(64, seed=5)[0], cfg, eval_samples=iq_frames(64, 6)[0])
    partial = folder / "partial.onnx"
    quantize_onnx_static(fp32, partial, iq_frames(64, seed=5)[0], cfg, nodes_to_exclude=["/4/Conv"])
    return fp32, int8, partial, report


def test_coverage_counts_macs_of_float_and_int8_graphs(models):
    fp32, int8, _, _ = models
    float_cov = op_coverage(fp32)
    assert float_cov["int8_nodes"] == 0 and float_cov["float_macs"] == CONV_NET_MACS
    assert float_cov["float_compute_nodes"] == ["/0/Conv", "/4/Conv", "/9/Gemm"]
    int8_cov = op_coverage(int8)
    assert int8_cov["int8_macs"] == CONV_NET_MACS and int8_cov["float_macs"] == 0
    assert int8_cov["mac_fraction_int8"] == 1.0 and int8_cov["float_compute_nodes"] == []


def test_excluded_node_is_counted_in_float(models):
    _, _, partial, _ = models
    cov = op_coverage(partial)
    assert cov["float_compute_nodes"] == ["/4/Conv"]
    assert cov["float_macs"] == 32 * 16 * 5 * 64
    assert cov["mac_fraction_int8"] == pytest.approx(1 - 32 * 16 * 5 * 64 / CONV_NET_MACS)


def test_report_carries_measured_speedup_size_and_coverage(models):
    fp32, int8, _, report = models
    a = report.assessment
    assert a.fp32_ms == report.fp32_ms and a.int8_ms == report.timings_ms["uint8"]
    assert a.speedup == pytest.approx(a.fp32_ms / a.int8_ms)
    assert a.int8_bytes == int8.stat().st_size and a.fp32_bytes == fp32.stat().st_size
    assert a.size_ratio < 1.0  # int8 weights, even with Q/DQ scales beside them
    assert a.coverage["int8_macs"] == CONV_NET_MACS
    assert ("did not help" in " ".join(a.warnings)) == (a.speedup <= 1.0)
    assert "x vs FP32" in a.summary()
    json.dumps(report.to_dict(), allow_nan=False)


def test_not_faster_warns_and_require_speedup_fails(models):
    fp32, int8, _, _ = models
    slower = assess_int8(fp32, int8, fp32_ms=1.0, int8_ms=1.3, threads=2)
    assert slower.speedup == pytest.approx(1 / 1.3)
    assert slower.warnings == [
        "INT8 did not help on this machine: ONNX Runtime INT8 1.3 ms vs FP32 1 ms at batch 1 "
        "with 2 thread(s) (0.77x)"
    ]
    faster = assess_int8(fp32, int8, fp32_ms=1.0, int8_ms=0.5, threads=2, require_speedup=True)
    assert faster.speedup == 2.0 and faster.warnings == []
    with pytest.raises(NoSpeedupError, match="did not help") as info:
        assess_int8(fp32, int8, fp32_ms=1.0, int8_ms=1.0, threads=2, require_speedup=True)
    assert isinstance(info.value, EdgeKDError) and "require_speedup" in info.value.one_line()


def test_model_bytes_counts_sidecars(tmp_path):
    xml, bin_ = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_bytes(b"x" * 10)
    bin_.write_bytes(b"y" * 90)
    assert model_bytes(xml) == 100
