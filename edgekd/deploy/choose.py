"""The selection rule: the fastest candidate within the accuracy budget that earns its complexity.

A pure function of the measured figures, so deploy.json alone reproduces the choice
(:func:`replay`). In order:

1. The FP32 reference is the first FP32 candidate that ran, in catalogue order: torch/fp32,
   onnxruntime/fp32, openvino/fp32 for the built-in backends (the student as trained, then its
   exports), then any other backend's ``<name>/fp32``. Each candidate's accuracy drop
   is ``reference accuracy - its accuracy`` on the same frames, through the same evaluator.
2. A candidate is rejected when the drop exceeds the budget (``max_accuracy_drop``, absolute,
   and/or ``max_accuracy_drop_relative``, a fraction of the reference), when its accuracy is
   under ``min_accuracy``, or when a reduced float precision (fp16/bf16) was requested but the
   runtime executed another one (the hint was ignored: it is a duplicate of fp32, not fp16).
3. Within budget, candidates are taken from the simplest (lowest ``complexity``, then catalogue
   order) up; one is kept only when its p50 beats the fastest candidate kept so far by more
   than the required gain: the measured noise of the two medians (``z`` standard errors of their
   difference, with SE(median) ~ 1.2533 * std / sqrt(runs)), at least ``min_gain`` and at most
   ``max_gain`` of the simpler one's p50. The cap bounds what simplicity may cost: the winner is
   never more than ``1 / (1 - max_gain) - 1`` (4.2% by default) slower than the fastest
   candidate within budget.
4. The winner is the kept candidate with the lowest p50.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from edgekd.errors import ConfigError, EdgeKDError

_REDUCED_FLOATS = ("fp16", "bf16")


class NoCandidate(EdgeKDError):
    """No FP32 reference ran, so no candidate can be judged (exit 2)."""


class NothingWithinBudget(EdgeKDError):
    """Every candidate that ran broke the accuracy budget: a failed check (exit 1)."""

    exit_code = 1


@dataclasses.dataclass
class SelectionRule:
    """Budgets and noise settings of the rule (accuracies and drops are fractions in [0, 1]).

    ``budget_source`` says where the accuracy budget came from (the target, the command line,
    or edgekd's default) and is recorded, not used.
    """

    max_accuracy_drop: float | None = 0.01
    max_accuracy_drop_relative: float | None = None
    min_accuracy: float | None = None
    z: float = 1.96
    min_gain: float = 0.02
    max_gain: float = 0.04
    budget_source: str = "default"

    def validate(self) -> None:
        if not 0.0 <= self.min_gain <= self.max_gain < 1.0:
            raise ConfigError(
                f"gains must satisfy 0 <= min_gain ({self.min_gain}) <= max_gain ({self.max_gain}) < 1"
            )
        if self.z < 0:
            raise ConfigError(f"z must be >= 0, got {self.z}")


@dataclasses.dataclass
class Verdict:
    """``status``: chosen | kept (within budget, slower than the winner) | rejected | skipped | failed."""

    status: str
    reason: str
    accuracy_drop: float | None = None


@dataclasses.dataclass
class Choice:
    """``chosen`` is None when no candidate is within the budget (every verdict says why)."""

    chosen: str | None
    reference: str
    reference_accuracy: float
    verdicts: dict[str, Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "reference": self.reference,
            "reference_accuracy": self.reference_accuracy,
            "verdicts": {k: dataclasses.asdict(v) for k, v in self.verdicts.items()},
        }


def median_se(row: dict[str, Any]) -> float:
    """Standard error of a p50 in ms: 1.2533 * std / sqrt(runs) (normal approximation)."""
    runs = max(int(row.get("runs") or 1), 1)
    return 1.2533 * float(row.get("std_ms") or 0.0) / math.sqrt(runs)


def required_gain(faster: dict[str, Any], simpler: dict[str, Any], rule: SelectionRule) -> float:
    """The fraction of ``simpler``'s p50 that ``faster`` must save to be worth keeping."""
    noise = rule.z * math.hypot(median_se(faster), median_se(simpler)) / simpler["p50_ms"]
    return min(max(noise, rule.min_gain), rule.max_gain)


def _budget_reason(row: dict[str, Any], ref_acc: float, rule: SelectionRule) -> str | None:
    drop = ref_acc - row["accuracy"]
    if rule.max_accuracy_drop is not None and drop > rule.max_accuracy_drop:
        return f"over accuracy budget: {-drop * 100:.2f} pt > {rule.max_accuracy_drop * 100:.2f}"
    if rule.max_accuracy_drop_relative is not None and drop > rule.max_accuracy_drop_relative * ref_acc:
        allowed = rule.max_accuracy_drop_relative * ref_acc * 100
        return (
            f"over accuracy budget: {-drop * 100:.2f} pt > {allowed:.2f} "
            f"({rule.max_accuracy_drop_relative:.1%} of the reference)"
        )
    if rule.min_accuracy is not None and row["accuracy"] < rule.min_accuracy:
        return f"under min_accuracy: {row['accuracy']:.2%} < {rule.min_accuracy:.2%}"
    requested, executed = row.get("requested_precision"), row.get("executed_precision")
    if requested in _REDUCED_FLOATS and executed not in (None, requested):
        return f"executes {executed}, not {requested}: the runtime ignored the precision hint here"
    return None


def _is_fp32(candidate_id: str) -> bool:
    return candidate_id.partition("/")[2] == "fp32"


def choose(rows: list[dict[str, Any]], rule: SelectionRule) -> Choice:
    """Apply the rule to candidate rows (deploy.json ``candidates[*].figures`` plus id/status).

    Each row: ``id``, ``complexity``, ``status`` ("ok" | "skipped" | "failed"), ``reason``,
    and for "ok" rows ``p50_ms``, ``std_ms``, ``runs``, ``accuracy`` (fraction),
    ``requested_precision``, ``executed_precision``. Rows are in catalogue order.

    Raises:
        NoCandidate: no FP32 reference ran (nothing can be judged).
    """
    rule.validate()
    ok = {r["id"]: r for r in rows if r["status"] == "ok"}
    fp32 = [r for r in rows if _is_fp32(r["id"])]  # the reference candidates, in catalogue order
    reference = next((r["id"] for r in fp32 if r["id"] in ok), None)
    if reference is None:
        failed = "; ".join(f"{r['id']}: {r['reason']}" for r in fp32)
        raise NoCandidate(
            f"no FP32 candidate ran, so the accuracy budget cannot be checked ({failed})",
            hint="install onnxruntime or openvino, or fix the export error above",
        )
    ref_acc = ok[reference]["accuracy"]
    verdicts: dict[str, Verdict] = {}
    within: list[dict[str, Any]] = []
    for row in rows:
        if row["status"] != "ok":
            verdicts[row["id"]] = Verdict(row["status"], row["reason"] or row["status"])
            continue
        drop = ref_acc - row["accuracy"]
        reason = _budget_reason(row, ref_acc, rule)
        verdicts[row["id"]] = Verdict("rejected" if reason else "kept", reason or "", drop)
        if reason is None:
            within.append(row)
    if not within:
        return Choice(None, reference, ref_acc, verdicts)
    kept: list[dict[str, Any]] = []
    # Simplest first; within a level the catalogue order decides (sorted() is stable), so of two
    # variants that tie within the noise (INT8 u8 and s8) the one listed first is kept.
    for row in sorted(within, key=lambda r: r["complexity"]):
        best = min(kept, key=lambda k: k["p50_ms"], default=None)
        if best is not None:
            gain = required_gain(row, best, rule)
            if row["p50_ms"] >= best["p50_ms"] * (1.0 - gain):
                verdicts[row["id"]].status = "rejected"
                verdicts[row["id"]].reason = (
                    f"not faster than {best['id']} (p50 {row['p50_ms']:.3f} vs {best['p50_ms']:.3f} ms; "
                    f"needs > {gain:.1%} gain)"
                )
                continue
        kept.append(row)
    winner = min(kept, key=lambda k: k["p50_ms"])
    for row in kept:
        verdict = verdicts[row["id"]]
        if row is winner:
            verdict.status, verdict.reason = "chosen", "chosen"
        else:
            figures = f"p50 {row['p50_ms']:.3f} vs {winner['p50_ms']:.3f} ms"
            verdict.reason = f"slower than the chosen {winner['id']} ({figures})"
    return Choice(winner["id"], reference, ref_acc, verdicts)


def replay(doc: dict[str, Any]) -> Choice:
    """The choice recomputed from a deploy.json document (its rows and its rule)."""
    rule = SelectionRule(**doc["rule"])
    return choose([candidate_row(c) for c in doc["candidates"]], rule)


def candidate_row(record: dict[str, Any]) -> dict[str, Any]:
    """The selection row of one deploy.json candidate record."""
    return {
        "id": record["id"],
        "complexity": record["complexity"],
        "status": record["status"],
        "reason": record["reason"],
        **(record.get("figures") or {}),
    }
