"""The default latency method (``auto``): a change of machine speed never fails the gate, a
real regression of the judged entry always does (property tests), and what ``auto`` falls
back to without an anchor."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekd.errors import ConfigError
from edgekd.gate import evaluate_gate
from edgekd.gate.latency import pick_anchor
from edgekd.targets import Budgets, TargetProfile

_TIMES = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")


def _latency(p50: float, spread: float, runs: int) -> dict:
    return {
        "p50": p50,
        "p90": p50 * (1 + spread),
        "p95": p50 * (1 + 1.5 * spread),
        "p99": p50 * (1 + 3 * spread),
        "mean": p50 * (1 + 0.2 * spread),
        "std": p50 * spread,
        "min": p50 * (1 - 0.5 * spread),
        "max": p50 * (1 + 5 * spread),
        "runs": runs,
    }


def _entry(entry_id: str, p50: float, spread: float, runs: int) -> dict:
    return {
        "id": entry_id,
        "status": "ok",
        "artifact": {"size_bytes": 1000},
        "latency_ms": _latency(p50, spread, runs),
        "accuracy": {"overall": 0.9},
    }


def _doc(int8_p50: float, anchor_p50: float, spread: float = 0.05, runs: int = 200, cpu: str = "A") -> dict:
    return {
        "reference": "torch/fp32",
        "environment": {"cpu": {"model": cpu, "usable_cores": 4}, "machine": "x86_64"},
        "entries": [
            _entry("torch/fp32", anchor_p50, spread, runs),
            _entry("onnxruntime/fp32", anchor_p50 * 0.6, spread, runs),
            _entry("onnxruntime/int8", int8_p50, spread, runs),
        ],
    }


def _scaled(doc: dict, factor: float, only: str | None = None, cpu: str | None = None) -> dict:
    """Every entry's times (or only entry ``only``'s) multiplied by ``factor``."""
    out = copy.deepcopy(doc)
    for entry in out["entries"]:
        if only is None or entry["id"] == only:
            for key in _TIMES:
                entry["latency_ms"][key] *= factor
    if cpu is not None:
        out["environment"]["cpu"]["model"] = cpu
    return out


def _target(budget: float, **kwargs) -> TargetProfile:
    budgets = Budgets(max_latency_regression=budget, **kwargs)
    return TargetProfile(name="t", runtime="onnxruntime", precision="int8", budgets=budgets)


def _check(verdict):
    return next(c for c in verdict.checks if c.metric == "latency_regression")


latencies = st.floats(min_value=0.01, max_value=500.0)
budgets = st.floats(min_value=0.01, max_value=0.5)
machine_speed = st.floats(min_value=0.2, max_value=5.0)
spreads = st.floats(min_value=0.0, max_value=0.5)


@settings(max_examples=200, deadline=None)
@given(int8=latencies, anchor=latencies, budget=budgets, factor=machine_speed, spread=spreads)
def test_a_pure_machine_speed_change_never_fails(int8, anchor, budget, factor, spread):
    baseline = _doc(int8, anchor, spread)
    current = _scaled(baseline, factor, cpu="B")  # even on another CPU model
    verdict = evaluate_gate(current, _target(budget), baseline=baseline)
    assert _check(verdict).status == "pass", _check(verdict).to_dict()


@settings(max_examples=200, deadline=None)
@given(int8=latencies, anchor=latencies, budget=budgets, factor=machine_speed, spread=spreads)
def test_a_regression_of_twice_the_budget_always_fails(int8, anchor, budget, factor, spread):
    baseline = _doc(int8, anchor, spread)
    regressed = _scaled(baseline, 1 + 2 * budget, only="onnxruntime/int8")
    current = _scaled(regressed, factor, cpu="B")  # on any machine speed
    verdict = evaluate_gate(current, _target(budget), baseline=baseline)
    assert _check(verdict).status == "fail", _check(verdict).to_dict()


def test_the_issue_case_a_ci_machine_30_percent_slower_passes_a_10_percent_budget():
    baseline = _doc(1.0, 2.0, spread=0.01, runs=2000)
    slower = _scaled(baseline, 1.3)
    assert evaluate_gate(slower, _target(0.1), baseline=baseline).passed
    # The old default judged each call as an independent sample of one machine: it fails.
    assert not evaluate_gate(slower, _target(0.1, latency_method="ci"), baseline=baseline).passed
    note = _check(evaluate_gate(slower, _target(0.1), baseline=baseline)).note
    assert "auto" in note and "torch/fp32" in note


def test_anchor_choice():
    doc = _doc(1.0, 2.0)
    assert pick_anchor(doc, doc, "onnxruntime/int8", None) == "torch/fp32"
    assert pick_anchor(doc, doc, "torch/fp32", None) == "onnxruntime/fp32"  # never the judged entry
    assert pick_anchor(doc, doc, "onnxruntime/int8", "onnxruntime/fp32") == "onnxruntime/fp32"
    with pytest.raises(ConfigError, match="judged entry itself"):
        pick_anchor(doc, doc, "onnxruntime/int8", "onnxruntime/int8")
    lonely = {"entries": [doc["entries"][2]], "environment": doc["environment"]}
    assert pick_anchor(lonely, lonely, "onnxruntime/int8", None) is None


def test_without_an_anchor_auto_uses_ci_on_one_machine_and_skips_across_machines():
    def lonely(doc: dict) -> dict:
        return {**doc, "reference": None, "entries": [doc["entries"][2]]}

    baseline = lonely(_doc(1.0, 2.0, spread=0.01, runs=2000))
    regressed = _scaled(baseline, 1.5)
    same = _check(evaluate_gate(regressed, _target(0.1), baseline=baseline))
    assert same.status == "fail" and "same machine" in same.note
    other = _check(evaluate_gate(_scaled(regressed, 1.0, cpu="B"), _target(0.1), baseline=baseline))
    assert other.status == "skip" and "latency_anchor" in other.note


def test_explicit_ratio_refuses_the_judged_entry_as_anchor():
    doc = _doc(1.0, 2.0)
    target = _target(0.1, latency_method="ratio", latency_anchor="onnxruntime/int8")
    with pytest.raises(ConfigError, match="always 1"):
        evaluate_gate(doc, target, baseline=doc)


def test_a_zero_latency_is_refused_not_divided_by():
    doc = _doc(1.0, 2.0)
    broken = copy.deepcopy(doc)
    broken["entries"][0]["latency_ms"]["p50"] = 0.0
    # auto passes over an anchor without a latency ...
    assert "onnxruntime/fp32" in _check(evaluate_gate(doc, _target(0.1), baseline=broken)).note
    # ... and a named one is refused with one line, not a ZeroDivisionError.
    with pytest.raises(ConfigError, match="> 0"):
        evaluate_gate(doc, _target(0.1, latency_anchor="torch/fp32"), baseline=broken)
    with pytest.raises(ConfigError, match="> 0"):
        evaluate_gate(doc, _target(0.1, latency_method="absolute"), baseline=_scaled(doc, 0.0))
