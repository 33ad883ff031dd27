"""compare_outputs: allclose semantics, top-1 agreement, worst element, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.config import from_dict
from edgekd.errors import ConfigError, ParityError, ShapeError
from edgekd.export.onnx_export import ExportConfig
from edgekd.export.parity import ParityConfig, compare_outputs, require_finite_outputs


def _logits(n: int = 50, classes: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (n, classes)).astype(np.float32)


def test_identical_outputs_pass_with_zero_error():
    ref = _logits()
    report = compare_outputs(ref, ref.copy(), ParityConfig(), "same")
    assert report.passed
    assert report.samples == 50
    assert report.max_abs_error == 0.0 and report.max_rel_error == 0.0
    assert report.top1_agreement == 1.0
    assert "PASS" in report.summary() and "\n" not in report.summary()
    report.raise_if_failed()  # no exception


def test_tolerance_is_numpy_allclose():
    ref = _logits()
    cfg = ParityConfig(atol=1e-4, rtol=1e-3)
    inside = ref + np.float32(0.9) * (1e-4 + 1e-3 * np.abs(ref))
    assert compare_outputs(ref, inside, cfg, "inside").passed
    outside = ref.copy()
    outside[7, 3] += 2 * (1e-4 + 1e-3 * abs(ref[7, 3]))
    report = compare_outputs(ref, outside, cfg, "outside")
    assert not report.passed
    assert report.worst["sample"] == 7 and report.worst["output"] == 3
    assert report.worst["reference"] == pytest.approx(float(ref[7, 3]))
    assert report.elements_out_of_tolerance == 1
    assert report.passed == bool(np.allclose(outside, ref, rtol=1e-3, atol=1e-4))


def test_failure_message_names_output_worst_element_and_tolerance():
    ref = _logits()
    cand = ref.copy()
    cand[11, 2] += 0.5
    report = compare_outputs(ref, cand, ParityConfig(), "ONNX export student.onnx")
    with pytest.raises(ParityError) as info:
        report.raise_if_failed()
    line = info.value.one_line()
    assert "ONNX export student.onnx" in line
    assert "sample 11 output 2" in line
    assert "atol=0.0001" in line and "rtol=0.001" in line
    assert "\n" not in line


def test_top1_agreement_decides_even_within_a_loose_tolerance():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    cand = ref.copy()
    cand[0] = [0.0, 1.0]  # argmax flips for one sample of four
    cfg = ParityConfig(atol=10.0, rtol=0.0, min_top1_agreement=0.8)
    report = compare_outputs(ref, cand, cfg, "flip")
    assert report.top1_agreement == pytest.approx(0.75)
    assert report.elements_out_of_tolerance == 0
    assert not report.passed
    with pytest.raises(ParityError, match=r"top-1 agreement 75\.00% < required 80\.00%"):
        report.raise_if_failed()


def test_nan_in_candidate_fails_and_report_stays_strict_json():
    ref = _logits()
    cand = ref.copy()
    cand[3, 1] = np.nan
    report = compare_outputs(ref, cand, ParityConfig(atol=1.0), "nan")
    assert not report.passed
    assert report.worst["sample"] == 3 and report.worst["output"] == 1
    json.dumps(report.to_dict(), allow_nan=False)  # NaN/inf become null


def test_shape_mismatch_is_a_shape_error():
    with pytest.raises(ShapeError, match="differs from the reference"):
        compare_outputs(_logits(10), _logits(9), ParityConfig(), "rows")
    with pytest.raises(ShapeError):
        compare_outputs(np.zeros((0, 3)), np.zeros((0, 3)), ParityConfig(), "empty")


def test_configs_build_strictly_from_yaml_data():
    cfg = from_dict(ExportConfig, {"opset": 17, "parity": {"atol": 1e-3}})
    assert cfg.parity.atol == 1e-3 and cfg.parity.rtol == 1e-3 and cfg.dynamic_batch
    with pytest.raises(ConfigError, match="min_top1_agreement"):
        from_dict(ExportConfig, {"parity": {"min_top1_agreement": 1.5}})
    with pytest.raises(ConfigError, match="opset"):
        from_dict(ExportConfig, {"opset": 9})
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(ExportConfig, {"parity": {"atoll": 1e-3}})
    with pytest.raises(ConfigError, match="atol"):
        from_dict(ParityConfig, {"atol": -1})


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_identical_non_finite_outputs_fail_and_are_named(value):
    """All-NaN on both sides 'agrees' perfectly (zero error, same argmax) and means nothing."""
    ref = np.full((8, 4), value, dtype=np.float32)
    report = compare_outputs(
        ref,
        ref.copy(),
        ParityConfig(atol=np.inf),
        "ONNX export m.onnx",
        reference_name="model a.pt",
        candidate_name="ONNX Runtime on m.onnx",
    )
    assert not report.passed
    assert report.nonfinite_reference == report.nonfinite_candidate == 8
    assert "FAIL" in report.summary() and "PASS" not in report.summary()
    with pytest.raises(ParityError) as info:
        report.raise_if_failed()
    line = info.value.one_line()
    assert "outputs of model a.pt are NaN/Inf on 8 of 8 frames" in line
    assert "outputs of ONNX Runtime on m.onnx are NaN/Inf on 8 of 8 frames" in line
    json.dumps(report.to_dict(), allow_nan=False)


def test_non_finite_frames_are_counted_per_side():
    ref = _logits(n=10)
    cand = ref.copy()
    cand[[2, 7], 0] = np.inf
    cand[7, 1] = np.nan  # still one frame
    report = compare_outputs(ref, cand, ParityConfig(atol=np.inf, min_top1_agreement=0.0), "x")
    assert (report.nonfinite_reference, report.nonfinite_candidate) == (0, 2)
    assert not report.passed
    with pytest.raises(ParityError, match="outputs of x are NaN/Inf on 2 of 10 frames"):
        report.raise_if_failed()


def test_require_finite_outputs_names_the_model_and_the_count():
    outputs = _logits(n=6)
    require_finite_outputs(outputs, "model a.onnx")  # finite: no exception
    outputs[4, 2] = np.nan
    with pytest.raises(ParityError, match=r"outputs of model a\.onnx are NaN/Inf on 1 of 6 frames"):
        require_finite_outputs(outputs, "model a.onnx")
