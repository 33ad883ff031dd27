"""Count the robustness corpus: cases per file kind, per entry point and per invariant.

    python tests/robustness/count_cases.py                     # what is collected
    EDGEKD_ROBUSTNESS_LOG=/tmp/r.jsonl python -m pytest tests/robustness -q -p no:cacheprovider
    python tests/robustness/count_cases.py --results /tmp/r.jsonl   # + invariants held / broken

Every MUST-REFUSE case checks six invariants (exit 2, one error line, names the file, no
traceback, nothing written, no code run); every VALID case three (exit 0, no traceback, no
code run). A property test (hypothesis) counts as one case; its examples are in the results log.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.robustness.harness import ACCEPT_INVARIANTS, REFUSE_INVARIANTS  # noqa: E402


class _Collector:
    def __init__(self) -> None:
        self.cases: list[dict] = []

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            mark = item.get_closest_marker("robustness")
            if mark is not None:
                self.cases.append({"id": item.nodeid, **mark.kwargs})


def collect() -> list[dict]:
    collector = _Collector()
    with contextlib.redirect_stdout(io.StringIO()):  # the node ids; the tables say enough
        code = pytest.main(
            ["--collect-only", "-q", "-p", "no:cacheprovider", str(Path(__file__).parent)],
            plugins=[collector],
        )
    if code not in (0, 5):
        raise SystemExit(f"collection failed (pytest exit {code})")
    return collector.cases


def _table(title: str, counts: dict[str, collections.Counter]) -> None:
    print(f"\n{title:<24} {'refuse':>7} {'accept':>7} {'total':>7}")
    for key in sorted(counts):
        c = counts[key]
        print(f"{key:<24} {c['refuse']:>7} {c['accept']:>7} {c['refuse'] + c['accept']:>7}")
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    print(f"{'all':<24} {total['refuse']:>7} {total['accept']:>7} {total['refuse'] + total['accept']:>7}")


def _results(path: Path) -> None:
    """Invariants held and broken, from the JSON lines the cases append to EDGEKD_ROBUSTNESS_LOG."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    held, broken = collections.Counter(), collections.Counter()
    for row in rows:
        names = REFUSE_INVARIANTS if row["expect"] == "refuse" else ACCEPT_INVARIANTS
        for name in names:
            (broken if name in row["broken"] else held)[name] += 1
    print(f"\n{'invariant (runs)':<24} {'held':>7} {'broken':>7}")
    for name in dict.fromkeys([*REFUSE_INVARIANTS, *ACCEPT_INVARIANTS]):
        print(f"{name:<24} {held[name]:>7} {broken[name]:>7}")
    failing = sum(1 for row in rows if row["broken"])
    print(f"{len(rows)} runs (property examples included), {failing} broke an invariant")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="JSON lines written through EDGEKD_ROBUSTNESS_LOG")
    args = parser.parse_args()
    cases = collect()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_entry: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for c in cases:
        by_kind[c["kind"]][c["expect"]] += 1
        by_entry[c["entry"]][c["expect"]] += 1
    _table("file kind", by_kind)
    _table("entry point", by_entry)
    refuse = sum(1 for c in cases if c["expect"] == "refuse")
    accept = len(cases) - refuse
    checks = refuse * len(REFUSE_INVARIANTS) + accept * len(ACCEPT_INVARIANTS)
    print(
        f"\ninvariants checked per collected case: {refuse} must-refuse x {len(REFUSE_INVARIANTS)} "
        f"({', '.join(REFUSE_INVARIANTS)}) + {accept} valid x {len(ACCEPT_INVARIANTS)} "
        f"({', '.join(ACCEPT_INVARIANTS)}) = {checks}"
    )
    if args.results:
        _results(args.results)


if __name__ == "__main__":
    main()
