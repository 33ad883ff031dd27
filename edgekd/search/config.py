"""The ``search:`` section of a recipe (and the options of ``edgekd search``), as data.

A search runs in four steps, each configured here: the candidates (``space``: a family and
a grid of its shape knobs), their latency measured on the target (``latency``, with the
budget from ``latency_budget_ms`` or the target profile), a training-free ranking
(``rank_by``: the DisWOT-style ``proxy``, or ``macs``), and successive halving with short
distillation runs (``halving``) before the winner's full distillation.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from edgekd.bench.latency import LatencyConfig
from edgekd.errors import ConfigError
from edgekd.search.space import SearchSpace


def _search_latency() -> LatencyConfig:
    # Shorter than the bench's 1 s per entry: a search measures dozens of candidates, and the
    # budget check needs the p50/p90 to a few percent, not the bench's full distribution.
    return LatencyConfig(warmup_runs=20, warmup_seconds=0.1, min_runs=100, min_seconds=0.4, max_seconds=10.0)


@dataclasses.dataclass
class HalvingConfig:
    """Successive halving over short distillation runs that share one teacher cache.

    ``initial`` candidates (the best ranked within budget) are trained ``epochs`` epochs each
    (null: 1/16 of the full distillation's epochs, at least 1: with the defaults the rounds
    then cost 1.5 full distillations in all); the best 1/``eta`` go on to a round of ``eta``
    times as many epochs, until one is left or ``rounds`` rounds have run. Every round trains
    from fresh initial weights with the recipe's optimiser settings (no early stopping), so a
    round's accuracies compare like with like.
    """

    initial: int = 8
    eta: int = 2
    epochs: int | None = None
    rounds: int = 3

    def validate(self) -> None:
        if (
            self.initial < 1
            or self.eta < 2
            or (self.epochs is not None and self.epochs < 1)
            or self.rounds < 1
        ):
            raise ConfigError(
                "search.halving needs initial >= 1, eta >= 2, epochs >= 1 and rounds >= 1, got "
                f"{self.initial}, {self.eta}, {self.epochs}, {self.rounds}"
            )

    def first_epochs(self, full_epochs: int) -> int:
        """Epochs of the first round: ``epochs``, else 1/16 of the full distillation's."""
        return self.epochs if self.epochs is not None else max(1, round(full_epochs / 16))


@dataclasses.dataclass
class SearchSection:
    """``enabled`` (recipes only): run the search before the distillation stage, whose student
    becomes the winner. ``target``: the profile latency is measured on (default: the recipe's
    ``gate.target``). ``latency_budget_ms`` overrides the target's budget (a p50 budget).
    ``proxy_frames``: the batch of real training frames the proxy is computed on."""

    enabled: bool = False
    space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    target: str | None = None
    latency_budget_ms: float | None = None
    latency: LatencyConfig = dataclasses.field(default_factory=_search_latency)
    rank_by: Literal["proxy", "macs"] = "proxy"
    proxy_frames: int = 64
    halving: HalvingConfig = dataclasses.field(default_factory=HalvingConfig)
    seed: int = 0

    def validate(self) -> None:
        self.space.validate()
        self.latency.validate()
        self.halving.validate()
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(f"search.latency_budget_ms must be > 0, got {self.latency_budget_ms}")
        if self.proxy_frames < 2:
            raise ConfigError(f"search.proxy_frames must be >= 2, got {self.proxy_frames}")


__all__ = ["HalvingConfig", "SearchSection"]
