"""ONNX Runtime static INT8 (QDQ): what was really built, measured choices, agreement, cleanup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.config import from_dict
from edgekd.errors import ConfigError, InputFileError, ParityError, ShapeError
from edgekd.export.onnx_export import ExportConfig, export_onnx
from edgekd.quantize.ort_static import (
    _TIE,
    QuantizeConfig,
    _FrameReader,
    describe_quantized,
    quantize_onnx_static,
)
from tests.export.tiny_nets import iq_frames, trained_net


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """A trained-ish tiny conv net exported to ONNX, with calibration and eval frames."""
    folder = tmp_path_factory.mktemp("fp32")
    path = folder / "student.onnx"
    export_onnx(trained_net("conv"), iq_frames(32, seed=2)[0], path, ExportConfig())
    calibration = iq_frames(128, seed=5)[0]
    clean_eval = iq_frames(256, seed=6, noise=1.0)[0]
    noisy_eval = iq_frames(256, seed=6, noise=2.0)[0]  # many frames near a decision boundary
    return path, calibration, clean_eval, noisy_eval


@pytest.mark.parametrize("activation", ["uint8", "int8"])
def test_fixed_activation_type_produces_qdq_with_that_zero_point(tmp_path, fp32, activation):
    path, calibration, clean_eval, _ = fp32
    out = tmp_path / "student.int8.onnx"
    cfg = QuantizeConfig(activation_type=activation, reduce_range=True)
    report = quantize_onnx_static(path, out, calibration, cfg, eval_samples=clean_eval)

    graph = describe_quantized(out)
    assert graph["quantize_linear"] > 0 and graph["dequantize_linear"] > graph["quantize_linear"]
    assert graph["activation_zero_point_dtypes"] == [activation]
    assert graph["weight_dtypes"] == ["int8"]
    assert graph["per_channel_weights"] >= 2  # both convolutions (and the head) per channel
    assert report.activation_type == activation and report.reduce_range is True
    assert set(report.timings_ms) == {activation} and report.fp32_ms > 0  # timed against FP32 only
    assert report.calibration_samples == 128
    assert report.parity is not None and report.parity.passed
    assert report.parity.top1_agreement >= 0.95  # trained-ish net on clean frames
    assert _files(tmp_path) == ["student.int8.onnx"]  # preprocessing temp files are gone
    json.dumps(report.to_dict(), allow_nan=False)


def test_auto_measures_both_variants_and_keeps_the_faster(tmp_path, fp32):
    path, calibration, clean_eval, _ = fp32
    out = tmp_path / "auto.onnx"
    report = quantize_onnx_static(path, out, calibration, QuantizeConfig(), eval_samples=clean_eval)

    assert set(report.timings_ms) == {"uint8", "int8"}
    assert all(ms > 0 for ms in report.timings_ms.values()) and report.fp32_ms > 0
    u8, s8 = report.timings_ms["uint8"], report.timings_ms["int8"]
    # The faster one wins; within the noise margin uint8 (ORT's x86 fast path) is kept.
    expected = "int8" if s8 < u8 * (1 - _TIE) else "uint8"
    assert report.activation_type == expected
    assert report.choice_reason.startswith("auto:") and f"{u8:.4g}" in report.choice_reason
    assert describe_quantized(out)["activation_zero_point_dtypes"] == [report.activation_type]
    assert report.threads >= 1 and report.kernel_error is not None
    assert report.parity.top1_agreement >= 0.95


def test_reduce_range_auto_follows_the_measured_kernel_error(tmp_path, fp32):
    path, calibration, clean_eval, _ = fp32
    report = quantize_onnx_static(
        path,
        tmp_path / "q.onnx",
        calibration,
        QuantizeConfig(activation_type="uint8"),
        eval_samples=clean_eval,
    )
    # On CPUs without VNNI the probe sees saturation and turns 7-bit weights on; elsewhere it stays off.
    assert report.reduce_range == ("reduce_range on" in report.choice_reason)
    if report.reduce_range:
        assert not report.kernel_error["saturation_suspected"]


def test_too_strict_agreement_on_noisy_frames_fails_and_leaves_nothing(tmp_path, fp32):
    path, calibration, _, noisy_eval = fp32
    out = tmp_path / "strict.onnx"
    cfg = QuantizeConfig(activation_type="uint8", min_top1_agreement=1.0)
    with pytest.raises(ParityError, match=r"INT8 vs FP32 .* < required 100\.00%") as info:
        quantize_onnx_static(path, out, calibration, cfg, eval_samples=noisy_eval)
    assert "\n" not in info.value.one_line() and "(fix:" in info.value.one_line()
    assert _files(tmp_path) == []


def test_agreement_threshold_must_be_a_fraction():
    with pytest.raises(ConfigError, match="min_top1_agreement must be in"):
        from_dict(QuantizeConfig, {"min_top1_agreement": 1.01})
    with pytest.raises(ConfigError, match="not a format ONNX Runtime supports"):
        from_dict(QuantizeConfig, {"activation_type": "int8", "weight_type": "uint8"})
    with pytest.raises(ConfigError, match="calibration_method"):
        from_dict(QuantizeConfig, {"calibration_method": "kl"})
    assert from_dict(QuantizeConfig, {"reduce_range": True}).reduce_range is True
    assert from_dict(QuantizeConfig, {}).reduce_range == "auto"
    with pytest.raises(ConfigError):
        from_dict(QuantizeConfig, {"reduce_range": "sometimes"})


def test_corrupt_fp32_model_is_input_file_error(tmp_path, fp32):
    _, calibration, _, _ = fp32
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(InputFileError, match=r"broken\.onnx"):
        quantize_onnx_static(broken, tmp_path / "out.onnx", calibration, QuantizeConfig())
    assert _files(tmp_path) == ["broken.onnx"]


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_in_bounded_slices(tmp_path, fp32, method):
    path, calibration, clean_eval, _ = fp32
    cfg = QuantizeConfig(activation_type="uint8", calibration_method=method, reduce_range=True)
    report = quantize_onnx_static(path, tmp_path / "q.onnx", calibration[:100], cfg, eval_samples=clean_eval)
    assert report.calibration_method == method and report.calibration_samples == 100
    assert report.parity.top1_agreement >= 0.9


def test_frame_reader_serves_batches_and_ranges():
    frames = np.arange(40 * 2 * 3, dtype=np.float32).reshape(40, 2, 3)
    reader = _FrameReader(frames, "input", batch=16)
    assert len(reader) == 3
    assert [b["input"].shape[0] for b in reader] == [16, 16, 8]
    reader.set_range(1, 2)
    (only,) = list(reader)
    np.testing.assert_array_equal(only["input"], frames[16:32])


def test_frames_that_do_not_fit_are_a_shape_error(tmp_path, fp32):
    path, calibration, _, _ = fp32
    with pytest.raises(ShapeError, match=r"do not fit the model input \['batch', 2, 128\]"):
        quantize_onnx_static(path, tmp_path / "q.onnx", calibration[:, :, :64], QuantizeConfig())
    assert _files(tmp_path) == []


def test_static_batch_model_is_calibrated_frame_by_frame(tmp_path, fp32):
    _, calibration, clean_eval, _ = fp32
    static = tmp_path / "static.onnx"
    export_onnx(trained_net("conv"), calibration[:4], static, ExportConfig(dynamic_batch=False))
    cfg = QuantizeConfig(activation_type="uint8", reduce_range=True)
    report = quantize_onnx_static(
        static, tmp_path / "q.onnx", calibration[:40], cfg, eval_samples=clean_eval[:50]
    )
    assert report.calibration_samples == 40 and report.parity.samples == 50
    assert describe_quantized(tmp_path / "q.onnx")["activation_zero_point_dtypes"] == ["uint8"]


def _conv_ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node if "Conv" in n.op_type]


def test_the_narrow_input_convolution_stays_float_unless_told(tmp_path, fp32):
    import onnx
    import onnxruntime as ort

    path, calibration, _, _ = fp32
    kept, quantized = tmp_path / "kept.onnx", tmp_path / "all.onnx"
    base = QuantizeConfig(activation_type="uint8", reduce_range=True)
    report = quantize_onnx_static(path, kept, calibration, base)
    report_all = quantize_onnx_static(
        path,
        quantized,
        calibration,
        QuantizeConfig(activation_type="uint8", reduce_range=True, float_input_conv=False),
    )
    # The 2-channel I/Q input convolution is named in the report and has float weights.
    assert len(report.float_nodes) == 1 and report_all.float_nodes == []
    graph = onnx.load(str(kept)).graph
    first_conv = next(n for n in graph.node if n.name == report.float_nodes[0])
    weight = next(i for i in graph.initializer if i.name == first_conv.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT
    assert not any(n.op_type == "DequantizeLinear" and n.output[0] == first_conv.input[1] for n in graph.node)

    # What ORT really runs: one float Conv left beside the integer convolutions; none in the other.
    def optimised_convs(model) -> list[str]:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"opt-{model.name}")
        ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        return _conv_ops(options.optimized_model_filepath)

    assert optimised_convs(kept).count("QLinearConv") == optimised_convs(quantized).count("QLinearConv") - 1
    assert not any(op in ("Conv", "FusedConv") for op in optimised_convs(quantized))
