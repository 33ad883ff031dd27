"""Baseline comparisons: accuracy drop and the three latency-regression methods."""

from __future__ import annotations

import pytest

from edgekd.errors import ConfigError
from edgekd.gate import evaluate_gate
from edgekd.targets import Budgets, TargetProfile


def _doc(p50=1.0, mean=None, std=0.05, runs=500, acc=0.80, anchor_p50=2.0):
    mean = p50 if mean is None else mean
    entry = {
        "id": "onnxruntime/int8",
        "status": "ok",
        "artifact": {"size_bytes": 1000},
        "params": 100,
        "macs": 1000,
        "latency_ms": {"p50": p50, "p90": p50 * 1.1, "mean": mean, "std": std, "runs": runs},
        "accuracy": {"overall": acc},
    }
    anchor = {
        "id": "torch/fp32",
        "status": "ok",
        "latency_ms": {"p50": anchor_p50, "mean": anchor_p50, "std": 0.1, "runs": runs},
        "accuracy": {"overall": 0.81},
    }
    return {"reference": "torch/fp32", "entries": [anchor, entry]}


def _target(**budgets):
    return TargetProfile(name="t", runtime="onnxruntime", precision="int8", budgets=Budgets(**budgets))


def _check(result, metric):
    return next(c for c in result.checks if c.metric == metric)


def test_accuracy_drop_against_baseline_and_reference():
    target = _target(max_accuracy_drop=0.01)
    # With a baseline, "auto" compares with it: 0.80 -> 0.785 is a 1.5 point drop.
    result = evaluate_gate(_doc(acc=0.785), target, baseline=_doc(acc=0.80))
    assert not result.passed and _check(result, "accuracy_drop").current == pytest.approx(0.015)
    # Without one, the reference entry (0.81) of the same run: 0.805 is within a point.
    assert evaluate_gate(_doc(acc=0.805), target).passed
    relative = _target(max_accuracy_drop_relative=0.02, accuracy_drop_vs="baseline")
    assert evaluate_gate(_doc(acc=0.79), relative, baseline=_doc(acc=0.80)).passed  # 1.25% of 0.80
    assert not evaluate_gate(_doc(acc=0.78), relative, baseline=_doc(acc=0.80)).passed  # 2.5%
    with pytest.raises(ConfigError, match="none was given"):
        evaluate_gate(_doc(), relative)


def test_ci_method_passes_noise_and_fails_a_real_regression():
    target = _target(max_latency_regression=0.05, latency_method="ci")
    baseline = _doc(p50=1.0, std=0.05, runs=500)
    # 6% slower on the point estimate, but so noisy the interval reaches well below 5%.
    noisy = evaluate_gate(_doc(p50=1.06, std=1.5, runs=50), target, baseline=baseline)
    assert noisy.passed and _check(noisy, "latency_regression").current == pytest.approx(0.06)
    # 20% slower with a tight interval: a real regression.
    slow = evaluate_gate(_doc(p50=1.2, std=0.05, runs=500), target, baseline=baseline)
    assert not slow.passed and "CI" in _check(slow, "latency_regression").note
    # Within budget: passes.
    assert evaluate_gate(_doc(p50=1.01, std=0.05, runs=500), target, baseline=baseline).passed


def test_ratio_method_ignores_a_machine_that_is_slower_today():
    target = _target(max_latency_regression=0.05, latency_method="ratio")
    baseline = _doc(p50=1.0, anchor_p50=2.0)
    # Everything 30% slower (model and anchor alike): not the model's fault.
    assert evaluate_gate(_doc(p50=1.3, anchor_p50=2.6), target, baseline=baseline).passed
    # The model alone 20% slower against an unchanged anchor: a regression.
    assert not evaluate_gate(_doc(p50=1.2, anchor_p50=2.0), target, baseline=baseline).passed
    absolute = _target(max_latency_regression=0.05, latency_method="absolute")
    assert not evaluate_gate(_doc(p50=1.3, anchor_p50=2.6), absolute, baseline=baseline).passed


def test_latency_regression_without_baseline_is_skipped_not_failed():
    result = evaluate_gate(_doc(), _target(max_latency_regression=0.05))
    check = _check(result, "latency_regression")
    assert check.status == "skip" and result.passed


def test_accuracy_drop_against_the_teacher():
    target = _target(max_accuracy_drop=0.05, accuracy_drop_vs="teacher")
    doc = _doc(acc=0.80)
    with pytest.raises(ConfigError, match="no teacher"):
        evaluate_gate(doc, target)
    doc["teacher"] = {"path": "teacher.pt", "sha256": "0" * 64, "accuracy": 0.84}
    result = evaluate_gate(doc, target)
    assert result.passed and _check(result, "accuracy_drop").current == pytest.approx(0.04)
    doc["teacher"]["accuracy"] = 0.86
    assert not evaluate_gate(doc, target).passed
