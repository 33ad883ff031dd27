"""One gate check (metric, baseline, current, limit) and the verdict over many."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]


@dataclasses.dataclass
class Check:
    """``current`` against ``limit``: ``kind`` "max" passes when current <= limit, "min" when >=.

    ``decided`` overrides the comparison when a statistical method judged the check
    (a latency regression whose confidence interval still reaches the limit passes).
    ``skipped`` marks a budget that this kind of result cannot measure (a static gate
    has no latency); it is reported, never counted as a failure.
    """

    metric: str
    current: float | None
    limit: float
    kind: Literal["max", "min"]
    unit: str = ""
    baseline: float | None = None
    note: str = ""
    decided: bool | None = None
    skipped: bool = False

    @property
    def status(self) -> Status:
        if self.skipped:
            return "skip"
        if self.decided is not None:
            return "pass" if self.decided else "fail"
        if self.current is None:
            return "fail"
        ok = self.current <= self.limit if self.kind == "max" else self.current >= self.limit
        return "pass" if ok else "fail"

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    @property
    def delta(self) -> float | None:
        """Current minus baseline, when both are known."""
        if self.current is None or self.baseline is None:
            return None
        return self.current - self.baseline

    @property
    def margin(self) -> float | None:
        """How far inside the limit the value is (negative: how far over)."""
        if self.current is None:
            return None
        return self.limit - self.current if self.kind == "max" else self.current - self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
            "limit": self.limit,
            "kind": self.kind,
            "unit": self.unit,
            "margin": self.margin,
            "status": self.status,
            "passed": self.passed,
            "note": self.note,
        }


@dataclasses.dataclass
class GateResult:
    target: str
    entry_id: str
    checks: list[Check]
    problem: str | None = None  # why the entry could not be judged at all
    baseline: str | None = None  # the baseline file, when one was given

    @property
    def passed(self) -> bool:
        return self.problem is None and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "edgekd.gate/1",
            "target": self.target,
            "entry": self.entry_id,
            "baseline": self.baseline,
            "passed": self.passed,
            "problem": self.problem,
            "checks": [c.to_dict() for c in self.checks],
        }
