"""Regression gate: a result checked against a target's budgets and, optionally, a baseline.

Exit codes: 0 every check passed, 1 a budget is broken, 2 bad input (a missing entry
or a malformed file, raised as EdgeKDError by the loaders).
"""

from edgekd.gate.checks import Check, GateResult
from edgekd.gate.evaluate import evaluate_gate
from edgekd.gate.report import gate_junit, gate_markdown, gate_table, write_outputs

__all__ = [
    "Check",
    "GateResult",
    "evaluate_gate",
    "gate_junit",
    "gate_markdown",
    "gate_table",
    "write_outputs",
]
