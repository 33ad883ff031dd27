"""The selection rule on hand-made figures: budget, simplicity beyond noise, reasons, replay."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.deploy.choose import NoCandidate, SelectionRule, choose, replay

COMPLEXITY = {
    "torch/fp32": 0,
    "onnxruntime/fp32": 1,
    "openvino/fp32": 2,
    "openvino/bf16": 3,
    "onnxruntime/int8-u8": 4,
    "onnxruntime/int8-s8": 4,
    "openvino/int8": 5,
    "toyrt/fp32": 1,
    "toyrt/int8": 4,
}


def row(cid: str, p50: float, acc: float, *, std: float = 0.0, runs: int = 400, status: str = "ok", **extra):
    precision = cid.split("/")[1].split("-")[0]
    base = {
        "id": cid,
        "complexity": COMPLEXITY[cid],
        "status": status,
        "reason": None if status == "ok" else extra.pop("reason", "why not"),
    }
    if status == "ok":
        base.update(
            p50_ms=p50,
            std_ms=std,
            runs=runs,
            accuracy=acc,
            requested_precision=precision,
            executed_precision=extra.pop("executed", precision),
        )
    return base


def test_over_budget_is_rejected_with_its_reason() -> None:
    rows = [
        row("torch/fp32", 14.0, 0.800),
        row("onnxruntime/fp32", 2.95, 0.800),
        row("onnxruntime/int8-u8", 1.85, 0.788),  # 1.2 points lost
        row("openvino/int8", 1.51, 0.797),
    ]
    choice = choose(rows, SelectionRule(max_accuracy_drop=0.005))
    verdict = choice.verdicts["onnxruntime/int8-u8"]
    assert verdict.status == "rejected"
    assert verdict.reason == "over accuracy budget: -1.20 pt > 0.50"
    assert choice.chosen == "openvino/int8" and choice.verdicts["openvino/int8"].reason == "chosen"
    assert choice.reference == "torch/fp32"
    assert choice.verdicts["onnxruntime/fp32"].status == "kept"
    assert "slower than the chosen openvino/int8" in choice.verdicts["onnxruntime/fp32"].reason


def test_relative_budget_and_min_accuracy() -> None:
    rows = [row("onnxruntime/fp32", 3.0, 0.50), row("onnxruntime/int8-u8", 1.0, 0.48)]
    relative = SelectionRule(max_accuracy_drop=None, max_accuracy_drop_relative=0.02)
    assert "of the reference" in choose(rows, relative).verdicts["onnxruntime/int8-u8"].reason
    floor = SelectionRule(max_accuracy_drop=0.05, min_accuracy=0.49)
    assert choose(rows, floor).verdicts["onnxruntime/int8-u8"].reason == "under min_accuracy: 48.00% < 49.00%"


def test_complex_candidate_within_noise_of_a_simpler_one_is_dropped() -> None:
    rows = [
        row("onnxruntime/fp32", 2.00, 0.9),
        row("openvino/fp32", 1.97, 0.9),  # 1.5% faster: below the 2% floor
        row("onnxruntime/int8-u8", 1.50, 0.9),  # 25% faster: kept
    ]
    choice = choose(rows, SelectionRule())
    ov = choice.verdicts["openvino/fp32"]
    assert ov.status == "rejected"
    assert ov.reason == "not faster than onnxruntime/fp32 (p50 1.970 vs 2.000 ms; needs > 2.0% gain)"
    assert choice.chosen == "onnxruntime/int8-u8"


def test_measured_noise_widens_the_required_gain_up_to_the_cap() -> None:
    quiet = [row("onnxruntime/fp32", 2.0, 0.9), row("openvino/fp32", 1.94, 0.9)]  # 3% faster
    assert choose(quiet, SelectionRule()).chosen == "openvino/fp32"
    noisy = [row("onnxruntime/fp32", 2.0, 0.9, std=0.5), row("openvino/fp32", 1.94, 0.9, std=0.5)]
    choice = choose(noisy, SelectionRule())
    assert choice.chosen == "onnxruntime/fp32"  # 3% is inside the noise of these medians
    assert "needs > 4.0% gain" in choice.verdicts["openvino/fp32"].reason  # capped at max_gain


def test_ignored_precision_hint_and_unrun_candidates_keep_their_reasons() -> None:
    rows = [
        row("onnxruntime/fp32", 2.0, 0.9),
        row("openvino/bf16", 1.0, 0.9, executed="fp32"),
        row("openvino/int8", 0, 0, status="skipped", reason="runtime not installed: openvino"),
    ]
    choice = choose(rows, SelectionRule())
    assert choice.verdicts["openvino/bf16"].reason.startswith("executes fp32, not bf16")
    assert choice.verdicts["openvino/int8"].status == "skipped"
    assert choice.verdicts["openvino/int8"].reason == "runtime not installed: openvino"
    assert choice.chosen == "onnxruntime/fp32"


def test_no_reference_raises_and_nothing_within_budget_chooses_none() -> None:
    with pytest.raises(NoCandidate, match="no FP32 candidate ran"):
        choose([row("onnxruntime/int8-u8", 1.0, 0.9)], SelectionRule())
    rows = [row("onnxruntime/fp32", 2.0, 0.9), row("onnxruntime/int8-u8", 1.0, 0.8)]
    choice = choose(rows, SelectionRule(max_accuracy_drop=0.01, min_accuracy=0.95))
    assert choice.chosen is None
    assert all(v.status == "rejected" for v in choice.verdicts.values())


def test_winner_is_within_the_gain_cap_of_the_fastest_in_budget() -> None:
    """Whatever the figures, simplicity never costs more than 1/(1 - max_gain) of the best p50."""
    rng = np.random.default_rng(0)
    rule = SelectionRule()
    for _ in range(300):
        ids = list(COMPLEXITY)
        rows = [
            row(
                cid,
                float(rng.uniform(1.0, 1.2)),
                0.9,
                std=float(rng.uniform(0, 0.5)),
                runs=int(rng.integers(10, 500)),
            )
            for cid in ids
        ]
        choice = choose(rows, rule)
        best = min(r["p50_ms"] for r in rows)
        chosen = next(r for r in rows if r["id"] == choice.chosen)
        assert chosen["p50_ms"] <= best / (1 - rule.max_gain) + 1e-12
        assert chosen["p50_ms"] <= rows[0]["p50_ms"]  # the simplest candidate is always in the running


def test_replay_from_a_document() -> None:
    rows = [row("onnxruntime/fp32", 2.0, 0.9), row("onnxruntime/int8-u8", 1.0, 0.9)]
    rule = SelectionRule(max_accuracy_drop=0.01)
    doc = {
        "rule": {**rule.__dict__},
        "candidates": [
            {
                "id": r["id"],
                "complexity": r["complexity"],
                "status": "ok",
                "reason": None,
                "figures": {k: v for k, v in r.items() if k not in ("id", "complexity", "status", "reason")},
            }
            for r in rows
        ],
    }
    assert replay(doc).chosen == choose(rows, rule).chosen == "onnxruntime/int8-u8"


def test_variants_of_one_level_tie_to_the_one_listed_first() -> None:
    rows = [
        row("onnxruntime/fp32", 2.0, 0.9),
        row("onnxruntime/int8-u8", 1.00, 0.9),
        row("onnxruntime/int8-s8", 0.99, 0.9),  # 1% faster: noise
    ]
    choice = choose(rows, SelectionRule())
    assert choice.chosen == "onnxruntime/int8-u8"
    assert choice.verdicts["onnxruntime/int8-s8"].reason.startswith("not faster than onnxruntime/int8-u8")


def test_the_reference_is_the_first_fp32_candidate_that_ran_whatever_its_backend() -> None:
    rows = [
        row("torch/fp32", 0.0, 0.0, status="failed", reason="no torch here"),
        row("onnxruntime/fp32", 0.0, 0.0, status="skipped", reason="not requested"),
        row("toyrt/fp32", 2.0, 0.80),  # a backend registered from a user's module
        row("toyrt/int8", 1.0, 0.79),
    ]
    choice = choose(rows, SelectionRule(max_accuracy_drop=0.02))
    assert (choice.reference, choice.reference_accuracy) == ("toyrt/fp32", 0.80)
    assert choice.chosen == "toyrt/int8"
    with pytest.raises(NoCandidate, match="torch/fp32: no torch here; onnxruntime/fp32: not requested"):
        choose(rows[:2] + rows[3:], SelectionRule(max_accuracy_drop=0.02))
