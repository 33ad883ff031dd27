"""Successive halving's schedule, with a training function whose outcome is known."""

from __future__ import annotations

import pytest

from edgekd.errors import ConfigError
from edgekd.search.config import HalvingConfig, SearchSection
from edgekd.search.halving import epochs_spent, successive_halving


def _trainer(quality: dict[str, float], calls: list[tuple[str, int]]):
    """Accuracy grows with epochs towards each candidate's quality, so a longer round can
    reorder candidates whose qualities are close."""

    def train(key: str, epochs: int) -> float:
        calls.append((key, epochs))
        return quality[key] * (1 - 0.5 / epochs)

    return train


def test_halves_each_round_and_multiplies_epochs():
    quality = {f"c{i}": 0.5 + 0.01 * i for i in range(8)}  # c7 best
    calls: list[tuple[str, int]] = []
    winner, rounds = successive_halving(list(quality), _trainer(quality, calls), HalvingConfig(), 2)
    assert winner == "c7"
    assert [(r.epochs, len(r.accuracy)) for r in rounds] == [(2, 8), (4, 4), (8, 2)]
    assert set(rounds[1].accuracy) == {"c4", "c5", "c6", "c7"}  # the best half of round 0
    assert epochs_spent(rounds) == 2 * 8 + 4 * 4 + 8 * 2 == sum(e for _k, e in calls)


def test_initial_takes_the_best_ranked_only():
    quality = {"a": 0.9, "b": 0.1, "c": 0.99}
    calls: list[tuple[str, int]] = []
    winner, rounds = successive_halving(
        ["b", "a", "c"], _trainer(quality, calls), HalvingConfig(initial=2), 1
    )
    assert {k for k, _e in calls} == {"a", "b"}  # "c" was ranked third: never trained
    assert winner == "a"
    assert len(rounds) == 1  # one survivor after the first halving: no round to train it alone


def test_ties_go_to_the_faster_then_the_better_ranked():
    flat = {"slow": 0.5, "fast": 0.5, "mid": 0.5}
    latency = {"slow": 3.0, "fast": 1.0, "mid": 2.0}
    winner, _ = successive_halving(
        ["slow", "mid", "fast"], lambda k, e: flat[k], HalvingConfig(rounds=1), 1, tie_break=latency.get
    )
    assert winner == "fast"
    winner, _ = successive_halving(["mid", "slow"], lambda k, e: 0.5, HalvingConfig(rounds=1), 1)
    assert winner == "mid"


def test_rounds_cap_the_schedule():
    quality = {f"c{i}": i for i in range(16)}
    _winner, rounds = successive_halving(
        list(quality), lambda k, e: quality[k], HalvingConfig(initial=16, rounds=2), 1
    )
    assert [len(r.accuracy) for r in rounds] == [16, 8]


def test_default_first_round_epochs_scale_with_the_full_distillation():
    cfg = HalvingConfig()
    assert cfg.first_epochs(128) == 8 and cfg.first_epochs(10) == 1
    assert HalvingConfig(epochs=3).first_epochs(128) == 3
    # initial 8, eta 2, 3 rounds: 8e + 4(2e) + 2(4e) = 24e = 1.5 x a 16e full run.
    assert 24 * cfg.first_epochs(160) == 1.5 * 160


@pytest.mark.parametrize("bad", [dict(initial=0), dict(eta=1), dict(epochs=0), dict(rounds=0)])
def test_bad_halving_settings_are_refused(bad):
    with pytest.raises(ConfigError, match=r"search\.halving"):
        HalvingConfig(**bad).validate()


def test_bad_search_settings_are_refused():
    with pytest.raises(ConfigError, match="latency_budget_ms"):
        SearchSection(latency_budget_ms=0).validate()
    with pytest.raises(ConfigError, match="proxy_frames"):
        SearchSection(proxy_frames=1).validate()
