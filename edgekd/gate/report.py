"""The gate's verdict for people and for CI: terminal table, Markdown, JUnit XML."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from edgekd.artifacts import atomic_write_text
from edgekd.gate.checks import Check, GateResult

_STATUS_TEXT = {"pass": "pass", "fail": "FAIL", "skip": "skip"}


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "%":  # accuracies are stored as fractions
        return f"{value:.2%}"
    if unit == "pt":  # an accuracy difference, in percentage points
        return f"{value * 100:+.2f} pt"
    if unit == "ratio":  # a relative change
        return f"{value:+.1%}"
    return f"{value:,.0f}"


def _limit_text(check: Check) -> str:
    return ("≤ " if check.kind == "max" else "≥ ") + fmt_value(check.limit, check.unit).lstrip("+")


def _delta_text(check: Check) -> str:
    delta = check.delta
    if delta is None:
        return "—"
    if check.unit in ("%", "pt"):
        return f"{delta * 100:+.2f} pt"
    if check.baseline:
        return f"{delta / check.baseline:+.1%}"
    return fmt_value(delta, check.unit)


def _rows(result: GateResult) -> list[list[str]]:
    rows = []
    for check in result.checks:
        rows.append(
            [
                check.metric,
                fmt_value(check.baseline, check.unit),
                fmt_value(check.current, check.unit),
                _delta_text(check),
                _limit_text(check),
                _STATUS_TEXT[check.status],
                check.note,
            ]
        )
    return rows


HEADER = ["metric", "baseline", "current", "delta", "limit", "status", "note"]


def _title(result: GateResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    against = f" vs baseline {result.baseline}" if result.baseline else ""
    return f"gate {result.target} on {result.entry_id}{against}: {verdict}"


def gate_table(result: GateResult):
    """A rich table: metric, baseline, current, delta, limit, status, note."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(_title(result), style="green" if result.passed else "bold red"))
    for column in HEADER:
        table.add_column(column, justify="left" if column in ("metric", "note") else "right")
    styles = {"pass": "green", "FAIL": "bold red", "skip": "dim"}
    for row in _rows(result):
        cells = [Text(cell) for cell in row]
        cells[5].stylize(styles[row[5]])
        table.add_row(*cells)
    if result.problem:
        table.add_row(result.entry_id, "—", "—", "—", "—", Text("FAIL", style="bold red"), result.problem)
    return table


def gate_markdown(result: GateResult) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"### {'✅' if result.passed else '❌'} {_title(result)}", ""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join(["---"] * len(HEADER)) + "|")
    for row in _rows(result):
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    if result.problem:
        lines.append(f"| {result.entry_id} | — | — | — | — | FAIL | {cell(result.problem)} |")
    return "\n".join(lines) + "\n"


def gate_junit(result: GateResult) -> str:
    """JUnit XML: one test case per check, so CI systems list each budget."""
    suite = ET.Element(
        "testsuite",
        name=f"edgekd gate {result.target}",
        tests=str(len(result.checks) + (1 if result.problem else 0)),
        failures=str(len(result.failures) + (1 if result.problem else 0)),
        skipped=str(sum(c.status == "skip" for c in result.checks)),
    )
    for check, row in zip(result.checks, _rows(result), strict=True):
        case = ET.SubElement(suite, "testcase", classname=f"edgekd.gate.{result.target}", name=check.metric)
        message = f"{check.metric}: current {row[2]}, limit {row[4]}" + (
            f" ({check.note})" if check.note else ""
        )
        if check.status == "fail":
            ET.SubElement(case, "failure", message=message).text = message
        elif check.status == "skip":
            ET.SubElement(case, "skipped", message=check.note or "not measured")
        else:
            ET.SubElement(case, "system-out").text = message
    if result.problem:
        case = ET.SubElement(suite, "testcase", classname=f"edgekd.gate.{result.target}", name="measured")
        ET.SubElement(case, "failure", message=result.problem).text = result.problem
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n"


def write_outputs(
    result: GateResult,
    *,
    junit: Path | None = None,
    markdown: Path | None = None,
    json_path: Path | None = None,
) -> None:
    """Write the requested reports; the Markdown also goes to $GITHUB_STEP_SUMMARY when set."""
    from edgekd.artifacts import atomic_write_json

    if junit is not None:
        atomic_write_text(junit, gate_junit(result))
    text = gate_markdown(result)
    if markdown is not None:
        atomic_write_text(markdown, text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        # Appended, not replaced: other steps of the same job write their own sections.
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if json_path is not None:
        atomic_write_json(json_path, result.to_dict())
