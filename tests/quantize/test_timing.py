"""paired_ms: the reference's median and every other model's paired per-round ratio to it."""

from __future__ import annotations

import pytest

from edgekd.quantize.timing import paired_ms


class FakeMachine:
    """A clock that each call advances by its own cost times the machine's current slowness.

    The machine runs at normal speed for 10 rounds' worth of calls, then twice as slow: a
    drift on a scale of seconds, as a shared VM shows.
    """

    def __init__(self, per_round_calls: int) -> None:
        self.now, self.calls, self.per_round_calls = 0.0, 0, per_round_calls

    def clock(self) -> float:
        return self.now

    def call(self, cost: float):
        def run() -> None:
            self.calls += 1
            slowness = 1.0 if self.calls < 10 * self.per_round_calls else 2.0
            self.now += cost * slowness

        return run


def test_the_ratio_is_paired_round_by_round() -> None:
    machine = FakeMachine(per_round_calls=3 * 5)
    costs = {"fp32": 0.004, "int8": 0.002, "other": 0.003}
    calls = {name: machine.call(cost) for name, cost in costs.items()}
    timed = paired_ms(calls, rounds=20, per_round=5, clock=machine.clock, clock_per_ms=1e-3)
    # Every round times all three at one speed, so the ratios are exact while the
    # reference's own median sits between the two speeds.
    assert timed["fp32"] / timed["int8"] == pytest.approx(2.0)
    assert timed["fp32"] / timed["other"] == pytest.approx(4 / 3)
    assert 4.0 <= timed["fp32"] <= 8.0


def test_rounds_alternate_their_order() -> None:
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    paired_ms(calls, rounds=2, per_round=1)
    warmup = len(order) - 6
    assert order[warmup:] == ["a", "b", "c", "c", "b", "a"]
