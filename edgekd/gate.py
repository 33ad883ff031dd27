"""Regression gate: a bench result checked against a target's budgets.

Exit codes: 0 every check passed, 1 a budget is broken, 2 bad input (a missing
entry or a malformed file, raised as EdgeKDError by the loaders).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekd.errors import ConfigError
from edgekd.targets import TargetProfile


@dataclasses.dataclass
class Check:
    metric: str
    current: float | None
    limit: float
    kind: str  # "max" or "min"
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.current is None:
            return False
        return self.current <= self.limit if self.kind == "max" else self.current >= self.limit

    @property
    def margin(self) -> float | None:
        """How far inside the limit the value is (negative: how far over)."""
        if self.current is None:
            return None
        return self.limit - self.current if self.kind == "max" else self.current - self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "current": self.current,
            "limit": self.limit,
            "kind": self.kind,
            "unit": self.unit,
            "margin": self.margin,
            "passed": self.passed,
        }


@dataclasses.dataclass
class GateResult:
    target: str
    entry_id: str
    checks: list[Check]
    problem: str | None = None  # why the entry could not be judged at all

    @property
    def passed(self) -> bool:
        return self.problem is None and all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "entry": self.entry_id,
            "passed": self.passed,
            "problem": self.problem,
            "checks": [c.to_dict() for c in self.checks],
        }


def _entry(bench: dict[str, Any], entry_id: str) -> dict[str, Any]:
    entries = bench.get("entries", [])
    for entry in entries:
        if entry.get("id") == entry_id:
            return entry
    present = ", ".join(e.get("id", "?") for e in entries) or "none"
    raise ConfigError(
        f"the bench result has no entry {entry_id!r} (present: {present})",
        hint="bench that runtime and precision, or gate against a target that matches an entry",
    )


def evaluate_gate(bench: dict[str, Any], target: TargetProfile) -> GateResult:
    """Compare the target's entry in ``bench`` (a bench.json document) with its budgets."""
    entry = _entry(bench, target.entry_id)
    result = GateResult(target=target.name, entry_id=target.entry_id, checks=[])
    if entry.get("status") != "ok":
        result.problem = f"{target.entry_id} was not measured: {entry.get('reason') or entry.get('status')}"
        return result
    budgets = target.budgets
    latency = entry.get("latency_ms") or {}
    accuracy = (entry.get("accuracy") or {}).get("overall")
    size = (entry.get("artifact") or {}).get("size_bytes")
    wanted: list[tuple[str, Any, float | None, str, str]] = [
        ("size_bytes", size, budgets.max_size_bytes, "max", "B"),
        ("params", entry.get("params"), budgets.max_params, "max", ""),
        ("macs", entry.get("macs"), budgets.max_macs, "max", ""),
        ("p50_ms", latency.get("p50"), budgets.max_p50_ms, "max", "ms"),
        ("p90_ms", latency.get("p90"), budgets.max_p90_ms, "max", "ms"),
        ("accuracy", accuracy, budgets.min_accuracy, "min", "%"),
    ]
    if budgets.max_accuracy_drop is not None:
        reference_id = bench.get("reference")
        reference = _entry(bench, reference_id) if reference_id else None
        ref_acc = (reference or {}).get("accuracy", {}) or {}
        drop = None
        if reference and reference.get("status") == "ok" and accuracy is not None:
            drop = ref_acc.get("overall") - accuracy
        wanted.append(("accuracy_drop", drop, budgets.max_accuracy_drop, "max", "pt"))
    for metric, current, limit, kind, unit in wanted:
        if limit is None:
            continue
        result.checks.append(
            Check(metric, None if current is None else float(current), float(limit), kind, unit)
        )
    return result


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "%":  # accuracies are stored as fractions
        return f"{value:.2%}"
    if unit == "pt":  # an accuracy difference, in percentage points
        return f"{value * 100:.2f} pt"
    return f"{value:,.0f}"


def gate_table(result: GateResult):
    """A rich table: metric, current, limit, margin, status."""
    from rich.table import Table

    status = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
    table = Table(title=f"gate {result.target} on {result.entry_id}: {status}")
    for column in ("metric", "current", "limit", "margin", "status"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for check in result.checks:
        limit = ("≤ " if check.kind == "max" else "≥ ") + _fmt(check.limit, check.unit)
        table.add_row(
            check.metric,
            _fmt(check.current, check.unit),
            limit,
            _fmt(check.margin, check.unit),
            "[green]pass[/]" if check.passed else "[red]FAIL[/]",
        )
    if result.problem:
        table.add_row(result.entry_id, "—", "—", "—", f"[red]{result.problem}[/]")
    return table
