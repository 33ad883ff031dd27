"""Successive halving (Jamieson and Talwalkar, 2016): train many candidates briefly, keep the
best fraction, train those longer, until one is left.

The logic is kept apart from training: :func:`successive_halving` takes a ``train(candidate
key, epochs) -> accuracy`` callable, so the schedule is tested on its own and the training
(:mod:`edgekd.search.training`) on its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from edgekd.search.config import HalvingConfig


@dataclasses.dataclass
class Round:
    """One round: its epochs and each trained candidate's validation accuracy (by key)."""

    epochs: int
    accuracy: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "accuracy": dict(self.accuracy)}


def successive_halving(
    ranked: Sequence[str],
    train: Callable[[str, int], float],
    cfg: HalvingConfig,
    first_epochs: int,
    *,
    tie_break: Callable[[str], float] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> tuple[str, list[Round]]:
    """The winner's key and every round.

    ``first_epochs``: the first round's epochs (:meth:`HalvingConfig.first_epochs`).
    ``ranked``: candidate keys, best first by the training-free ranking; the first
    ``cfg.initial`` enter. ``tie_break(key)``: smaller wins among equal accuracies (the
    measured latency: of two equally accurate students the faster one). ``progress(round,
    done, total)`` after every trained candidate.
    """
    if not ranked:
        raise ValueError("successive halving needs at least one candidate")
    survivors = list(ranked[: cfg.initial])
    order = {key: index for index, key in enumerate(ranked)}
    rounds: list[Round] = []
    epochs = first_epochs
    for index in range(cfg.rounds):
        accuracy: dict[str, float] = {}
        for done, key in enumerate(survivors, start=1):
            accuracy[key] = float(train(key, epochs))
            if progress is not None:
                progress(index, done, len(survivors))
        rounds.append(Round(epochs, accuracy))
        # Higher accuracy first; then the tie-break (latency); then the ranking, so the order is total.
        survivors.sort(key=lambda k: (-accuracy[k], tie_break(k) if tie_break else 0.0, order[k]))
        if len(survivors) == 1:
            break
        survivors = survivors[: max(1, math.ceil(len(survivors) / cfg.eta))]
        if index == cfg.rounds - 1 or len(survivors) == 1:
            break
        epochs *= cfg.eta
    return survivors[0], rounds


def epochs_spent(rounds: Sequence[Round]) -> int:
    """Training epochs of all rounds together (the search's training cost, in epochs)."""
    return sum(r.epochs * len(r.accuracy) for r in rounds)


__all__ = ["Round", "epochs_spent", "successive_halving"]
