"""Run one corpus case through the real CLI and check every invariant it must hold.

A MUST-REFUSE case must end with exit 2 and one ``edgekd: error: ...`` line that names the
offending file, no traceback, nothing new or changed on disk (the ``--out`` folder, the
working directory, the inputs) and no marker written by hostile code. A VALID case must
exit 0 without a traceback and without running hostile code.

Each case is a ``pytest.param`` marked ``robustness(kind=..., entry=..., expect=...)`` so
``count_cases.py`` can count cases per file kind, entry point and invariant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli

REFUSE_INVARIANTS = ("exit-2", "one-line", "names-file", "no-traceback", "nothing-written", "no-code-run")
ACCEPT_INVARIANTS = ("exit-0", "no-traceback", "no-code-run")
# Environment a user's shell might carry that would change what a case does.
_CLEAN_ENV = {
    name: None
    for name in (
        "EDGEKD_DEBUG",
        "EDGEKD_QUIET",
        "EDGEKD_VERBOSE",
        "EDGEKD_JSON",
        "EDGEKD_TARGET",
        "GITHUB_STEP_SUMMARY",
    )
}
MARKER_MODULE = "edgekd_robust_marker"


def case(kind: str, entry: str, expect: str, case_id: str, *values: object):
    """A parametrized case carrying its file kind, entry point and expectation as a marker."""
    assert expect in ("refuse", "accept"), expect
    return pytest.param(
        *values, id=case_id, marks=pytest.mark.robustness(kind=kind, entry=entry, expect=expect)
    )


def matrix(kind: str, mutations: Iterable[str], entries: Iterable[str], expect: str = "refuse") -> list:
    """Every (mutation, entry) pair as a case with id ``mutation-entry``."""
    entries = list(entries)
    return [case(kind, e, expect, f"{m}-{e}", m, e) for m in mutations for e in entries]


def snapshot(roots: Sequence[Path]) -> dict[str, str]:
    """path -> sha256 of every file under ``roots`` (small test trees: hashing is cheap)."""
    found: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    digest = "unreadable"
                found[str(path)] = digest
    return found


@dataclasses.dataclass
class Outcome:
    exit_code: int
    output: str
    escaped: BaseException | None  # an exception that got past the CLI root

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]

    def summary(self) -> str:
        """The ``edgekd:`` line (else the last line), with how many lines there were."""
        lines = self.lines
        last = next(
            (line for line in lines if line.startswith("edgekd:")), lines[-1] if lines else "<no output>"
        )
        if len(lines) > 1:
            last = f"{len(lines)} lines, first {lines[0][:80]!r}; {last}"
        escaped = f" [escaped {type(self.escaped).__name__}: {self.escaped}]" if self.escaped else ""
        return f"exit {self.exit_code}: {last[:300]}{escaped}"


def invoke(argv: Sequence[object]) -> Outcome:
    """Run ``edgekd ARGV`` in-process as a user would see it: exit code and combined output."""
    result = CliRunner(env=_CLEAN_ENV).invoke(cli, [str(a) for a in argv])
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.output, escaped)


class Sandbox:
    """One case: its folder, the folders it must leave untouched, and the marker folder."""

    def __init__(self, case_dir: Path, watched: Sequence[Path], marker_dir: Path) -> None:
        self.dir = case_dir
        self.out = case_dir / "out"
        self.cwd = case_dir / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.watched = [case_dir, *watched]
        self.marker_dir = marker_dir

    def markers(self) -> list[str]:
        return sorted(p.name for p in self.marker_dir.iterdir()) if self.marker_dir.exists() else []

    def clear_markers(self) -> None:
        for path in self.marker_dir.glob("*"):
            path.unlink()
        for name in [m for m in sys.modules if m.startswith(MARKER_MODULE)]:
            del sys.modules[name]  # so a later case that imports it writes the marker again

    def run(self, argv: Sequence[object]) -> tuple[Outcome, list[str], list[str]]:
        """Run in ``self.cwd``; return the outcome, files new or changed, markers written."""
        self.clear_markers()
        before = snapshot(self.watched)
        previous = Path.cwd()
        os.chdir(self.cwd)
        try:
            outcome = invoke(argv)
        finally:
            os.chdir(previous)
        after = snapshot(self.watched)
        changed = sorted(p for p, digest in after.items() if before.get(p) != digest)
        changed += sorted(f"{p} (deleted)" for p in before if p not in after)
        markers = self.markers()
        self.clear_markers()
        return outcome, changed, markers


def refusal_problems(outcome: Outcome, offenders: Sequence[str], changed: list[str], markers: list[str]):
    """The invariants a MUST-REFUSE case broke (empty when it held them all)."""
    broken = []
    if outcome.exit_code != 2 or outcome.escaped is not None:
        broken.append("exit-2")
    lines = outcome.lines
    if len(lines) != 1 or not lines[0].startswith("edgekd: error: "):
        broken.append("one-line")
    error = next((line for line in lines if line.startswith("edgekd: ")), "")
    if not any(name in error for name in offenders):
        broken.append("names-file")
    if "Traceback" in outcome.output or outcome.escaped is not None:
        broken.append("no-traceback")
    if changed:
        broken.append("nothing-written")
    if markers:
        broken.append("no-code-run")
    return broken


def acceptance_problems(outcome: Outcome, markers: list[str]) -> list[str]:
    broken = []
    if outcome.exit_code != 0 or outcome.escaped is not None:
        broken.append("exit-0")
    if "Traceback" in outcome.output or outcome.escaped is not None:
        broken.append("no-traceback")
    if markers:
        broken.append("no-code-run")
    return broken


def _log(record: dict) -> None:
    """Append one JSON line per case to $EDGEKD_ROBUSTNESS_LOG (for reports; off by default)."""
    target = os.environ.get("EDGEKD_ROBUSTNESS_LOG")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _case_id() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]


def expect_refusal(box: Sandbox, argv: Sequence[object], offenders: Sequence[str] | str) -> None:
    """Run ``argv`` and assert every MUST-REFUSE invariant; the message lists all that broke."""
    offenders = [offenders] if isinstance(offenders, str) else list(offenders)
    outcome, changed, markers = box.run(argv)
    broken = refusal_problems(outcome, offenders, changed, markers)
    _log(
        {
            "case": _case_id(),
            "expect": "refuse",
            "broken": broken,
            "exit": outcome.exit_code,
            "line": outcome.summary(),
            "changed": changed[:5],
            "markers": markers,
        }
    )
    assert not broken, (
        f"broke {broken}; {outcome.summary()}; offender {offenders}; "
        f"written {changed[:3]}; markers {markers}; argv {' '.join(map(str, argv))}"
    )


def expect_acceptance(box: Sandbox, argv: Sequence[object]) -> Outcome:
    outcome, _changed, markers = box.run(argv)
    broken = acceptance_problems(outcome, markers)
    _log(
        {
            "case": _case_id(),
            "expect": "accept",
            "broken": broken,
            "exit": outcome.exit_code,
            "line": outcome.summary(),
            "markers": markers,
        }
    )
    assert not broken, f"broke {broken}; {outcome.summary()}; argv {' '.join(map(str, argv))}"
    return outcome
