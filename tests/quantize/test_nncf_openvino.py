"""OpenVINO INT8 through NNCF: quantize, accuracy control, agreement, precision label, cleanup."""

from __future__ import annotations

import json
import sys

# openvino is a core dependency and nncf is in the test extra (edgekd[openvino]): a broken
# install must fail these tests, not skip them.
import nncf  # noqa: F401
import numpy as np
import openvino  # noqa: F401
import pytest
import torch

from edgekd.errors import ParityError, RuntimeUnavailable, ShapeError
from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.config import QuantizeConfig
from tests.export.tiny_nets import iq_frames, trained_net


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A healthy conv net and one with an outlier channel that breaks its second conv's input."""
    folder = tmp_path_factory.mktemp("nncf")
    frames = iq_frames(16, seed=2)[0]
    healthy = folder / "healthy.onnx"
    export_onnx(trained_net("conv"), frames, healthy, ExportConfig())
    broken_net = trained_net("conv")
    with torch.no_grad():
        broken_net[4].weight[:, 3] = 0.0
        broken_net[1].bias[3] = 3000.0
    broken = folder / "outlier.onnx"
    export_onnx(broken_net, frames, broken, ExportConfig())
    return healthy, broken, iq_frames(64, seed=5)[0], *iq_frames(128, seed=9)


def test_nncf_int8_ir_agrees_and_runs_in_u8(tmp_path, models):
    from edgekd.quantize.nncf_openvino import quantize_openvino

    healthy, _, calib, val_x, _ = models
    out = tmp_path / "student.int8.xml"
    report = quantize_openvino(healthy, out, calib, QuantizeConfig(), eval_samples=val_x)
    assert _files(tmp_path) == ["student.int8.bin", "student.int8.xml"]
    assert report.precision in {"u8", "i8"}  # the CPU plugin really runs the convolutions in INT8
    assert report.parity.passed and report.parity.top1_agreement >= 0.95
    assert report.calibration_samples == 64 and not report.accuracy_control
    assert len(report.int8_layers) == 3 and report.float_layers == []  # 2 convs + the head
    a = report.assessment
    assert a.fp32_ms > 0 and a.int8_ms > 0 and a.int8_bytes == model_bytes_of(out)
    assert ("did not help" in " ".join(a.warnings)) == (a.speedup <= 1.0)
    json.dumps(report.to_dict(), allow_nan=False)


def model_bytes_of(xml) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def test_outlier_breaks_plain_int8_and_accuracy_control_restores_it(tmp_path, models):
    from edgekd.quantize.nncf_openvino import quantize_openvino

    _, broken, calib, val_x, val_y = models
    cfg = QuantizeConfig(max_accuracy_drop=0.02)
    with pytest.raises(ParityError, match="OpenVINO INT8 vs FP32"):
        quantize_openvino(broken, tmp_path / "plain.xml", calib, cfg, eval_samples=val_x)
    assert _files(tmp_path) == []  # a failing INT8 leaves nothing
    report = quantize_openvino(broken, tmp_path / "ac.xml", calib, cfg, val_samples=val_x, val_labels=val_y)
    assert report.accuracy_control and report.float_layers  # NNCF kept something in float ...
    assert report.accuracy["fp32"] - report.accuracy["int8"] <= 0.02  # ... and met the budget
    assert _files(tmp_path) == ["ac.bin", "ac.xml"]


def test_accuracy_control_streams_a_lazy_validation_split_with_the_same_result(tmp_path, models, monkeypatch):
    from edgekd.data import batches
    from edgekd.data.dataset import ArrayDataset
    from edgekd.data.lazy_arrays import ArrayFileDataset
    from edgekd.quantize.nncf_openvino import LabelledFrames, quantize_openvino

    monkeypatch.setattr(batches, "MAX_AUTO_WORKERS", 0)  # read in this process: no workers under pytest
    _, broken, calib, val_x, val_y = models
    path = tmp_path / "val.npz"
    ArrayDataset(x=val_x, y=val_y, class_names=[f"c{i}" for i in range(int(val_y.max()) + 1)]).save_npz(path)
    lazy = ArrayFileDataset(path)  # memory-mapped: frames read batch by batch on every pass
    cfg = QuantizeConfig(max_accuracy_drop=0.02)
    streamed = quantize_openvino(broken, tmp_path / "s.xml", calib, cfg, validation=LabelledFrames(lazy, 32))
    arrays = quantize_openvino(broken, tmp_path / "a.xml", calib, cfg, val_samples=val_x, val_labels=val_y)
    assert streamed.accuracy_control and streamed.accuracy == arrays.accuracy
    assert streamed.float_layers == arrays.float_layers
    with pytest.raises(ShapeError, match="not both"):
        quantize_openvino(
            broken,
            tmp_path / "b.xml",
            calib,
            cfg,
            val_samples=val_x,
            val_labels=val_y,
            validation=LabelledFrames(lazy),
        )


def test_bad_inputs_are_one_line_errors(tmp_path, models):
    from edgekd.quantize.nncf_openvino import quantize_openvino

    healthy, _, calib, val_x, val_y = models
    with pytest.raises(ShapeError, match="do not fit"):
        quantize_openvino(healthy, tmp_path / "q.xml", calib[:, :, :64], QuantizeConfig())
    with pytest.raises(ShapeError, match="one label per validation frame"):
        quantize_openvino(
            healthy, tmp_path / "q.xml", calib, QuantizeConfig(), val_samples=val_x, val_labels=val_y[:3]
        )
    with pytest.raises(ShapeError, match=r"must end in \.xml"):
        quantize_openvino(healthy, tmp_path / "q.onnx", calib, QuantizeConfig())
    assert _files(tmp_path) == []


def test_missing_nncf_is_runtime_unavailable(tmp_path, models, monkeypatch):
    from edgekd.quantize.nncf_openvino import quantize_openvino

    healthy, _, calib, _, _ = models
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(RuntimeUnavailable, match="needs nncf") as info:
        quantize_openvino(healthy, tmp_path / "q.xml", calib, QuantizeConfig())
    assert "quantize.runtime: onnxruntime" in info.value.one_line()
    assert _files(tmp_path) == []


def test_minmax_ranges_keep_loud_frames_that_nncf_mean_ranges_clip(tmp_path, models):
    """Radio frames span 40 dB of SNR: NNCF's own ranges (mean of per-frame extremes) clip the
    loud ones; ``calibration_method: minmax`` (the default) takes the global extremes."""
    from edgekd.quantize.nncf_openvino import quantize_openvino

    healthy, _, calib, val_x, _ = models
    gains = np.geomspace(0.25, 8.0, len(calib)).astype(np.float32)[:, None, None]
    loud = val_x * 8.0
    agreement = {}
    for method in ("minmax", "entropy"):  # "entropy": NNCF has none, so its own ranges stay
        cfg = QuantizeConfig(calibration_method=method, min_top1_agreement=0.0)
        report = quantize_openvino(healthy, tmp_path / f"{method}.xml", calib * gains, cfg, eval_samples=loud)
        agreement[method] = report.parity.top1_agreement
    assert agreement["minmax"] >= 0.95, agreement
    assert agreement["minmax"] > agreement["entropy"] + 0.05, agreement
