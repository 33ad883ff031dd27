"""The one export -> quantize -> verify sequence (edgekd.pipeline.conversion) that the pipeline,
deploy and the QAT baseline share."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ParityError
from edgekd.export.onnx_export import ExportConfig
from edgekd.pipeline.conversion import convert, verify_int8_accuracy
from edgekd.quantize.config import QuantizeConfig
from edgekd.quantize.coverage import describe_quantized
from tests.export.tiny_nets import CLASSES, iq_frames, trained_net


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert")
    cfg = QuantizeConfig(activation_type="uint8", reduce_range=True, max_accuracy_drop=None)
    frames, calib, evals = iq_frames(32, seed=2)[0], iq_frames(64, seed=5)[0], iq_frames(64, seed=6)[0]
    result = convert(
        trained_net("conv"),
        frames,
        out,
        ExportConfig(openvino=False),
        cfg,
        calib,
        eval_samples=evals,
        threads=1,
    )
    return out, result


def test_convert_exports_then_quantizes_into_the_quantizers_file(converted):
    out, result = converted
    assert result.onnx == out / "student.onnx" and result.export.passed and result.openvino is None
    assert result.int8.path == out / "student.int8.onnx" and result.int8.kind == "onnx-int8"
    assert describe_quantized(result.int8.path)["activation_zero_point_dtypes"] == ["uint8"]
    report = result.int8.to_dict()["quantization"]
    assert (
        report["threads"] == 1 and report["parity"]["passed"]
    )  # timed with the count given, agreement checked
    assert sorted(p.name for p in out.iterdir()) == ["student.int8.onnx", "student.onnx"]


def test_an_int8_model_over_the_accuracy_budget_is_removed(converted):
    _, result = converted
    x, y = iq_frames(64, seed=7)
    val = ArrayDataset(x=x, y=y, class_names=[str(i) for i in range(CLASSES)])
    verdict = verify_int8_accuracy(result.int8, result.onnx, val, max_drop=1.0)
    assert verdict["frames"] == 64 and np.isclose(verdict["drop"], verdict["fp32"] - verdict["int8"])
    with pytest.raises(ParityError, match="INT8 loses"):
        verify_int8_accuracy(result.int8, result.onnx, val, max_drop=-1.0)  # no model can meet it
    assert not result.int8.path.exists() and result.onnx.exists()
