from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekd.errors import ConfigError
from edgekd.gate import evaluate_gate
from edgekd.targets import Budgets, TargetProfile


def _bench(p90=1.0, acc=0.8, size=1000, params=100, ref_acc=0.82, status="ok"):
    entry = {
        "id": "onnxruntime/int8",
        "status": status,
        "reason": None if status == "ok" else "onnxruntime is not installed",
        "artifact": {"size_bytes": size},
        "params": params,
        "macs": 5000,
        "latency_ms": {"p50": p90 * 0.9, "p90": p90},
        "accuracy": {"overall": acc},
    }
    reference = {"id": "torch/fp32", "status": "ok", "accuracy": {"overall": ref_acc}}
    return {"reference": "torch/fp32", "entries": [reference, entry]}


def _target(**budgets):
    return TargetProfile(name="t", runtime="onnxruntime", precision="int8", budgets=Budgets(**budgets))


def test_all_within_passes_and_each_broken_budget_fails():
    target = _target(
        max_size_bytes=2000, max_params=200, max_p90_ms=2.0, min_accuracy=0.7, max_accuracy_drop=0.05
    )
    assert evaluate_gate(_bench(), target).passed
    broken = {
        "size_bytes": _bench(size=2001),
        "params": _bench(params=201),
        "p90_ms": _bench(p90=2.5),
        "accuracy": _bench(acc=0.69, ref_acc=0.7),
        "accuracy_drop": _bench(acc=0.75, ref_acc=0.81),
    }
    for metric, bench in broken.items():
        result = evaluate_gate(bench, target)
        assert not result.passed and result.exit_code == 1
        assert [c.metric for c in result.checks if not c.passed] == [metric]


def test_unmeasured_entry_fails_with_its_reason():
    result = evaluate_gate(_bench(status="skipped"), _target(max_p90_ms=1.0))
    assert not result.passed and "not installed" in result.problem


def test_missing_entry_is_bad_input():
    target = TargetProfile(name="t", runtime="openvino", precision="fp32")
    with pytest.raises(ConfigError, match="no entry 'openvino/fp32'") as err:
        evaluate_gate(_bench(), target)
    assert err.value.exit_code == 2


@given(
    limit=st.floats(min_value=0.01, max_value=1e4, allow_nan=False),
    value=st.floats(min_value=0.0, max_value=2e4, allow_nan=False),
)
def test_latency_budget_property(limit, value):
    result = evaluate_gate(_bench(p90=value), _target(max_p90_ms=limit))
    assert result.passed == (value <= limit)


@given(
    limit=st.floats(min_value=0.0, max_value=1.0),
    value=st.floats(min_value=0.0, max_value=1.0),
)
def test_accuracy_budget_property(limit, value):
    result = evaluate_gate(_bench(acc=value), _target(min_accuracy=limit))
    assert result.passed == (value >= limit)


@given(limit=st.integers(min_value=0, max_value=10**9), size=st.integers(min_value=0, max_value=10**9))
def test_size_budget_property_including_the_boundary(limit, size):
    result = evaluate_gate(_bench(size=size), _target(max_size_bytes=limit))
    assert result.passed == (size <= limit)
