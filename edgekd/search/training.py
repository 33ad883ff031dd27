"""Short distillation runs of search candidates, all reading one teacher-logit cache.

Every run distils with the recipe's own objective and optimiser settings, only shorter: no
early stopping, the warm-up cut to fit, fresh seeded initial weights. The teacher's logits
are cached once in ``cache_dir`` (keyed by the teacher, the training frames and the
augmentation, :mod:`edgekd.distill.teacher_cache`), so the teacher runs once for the whole
search, whichever and however many students train.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgekd.distill.config import KDConfig, TrainConfig
from edgekd.distill.train import distill
from edgekd.search.space import Candidate


@dataclasses.dataclass
class ShortTrainer:
    """``trainer(candidate, epochs)`` -> the best validation accuracy of a short distillation."""

    teacher: Any
    train: Any
    val: Any
    kd: KDConfig
    train_cfg: TrainConfig
    cache_dir: Path
    num_classes: int
    in_channels: int
    teacher_name: str = "teacher"

    def config(self, epochs: int) -> TrainConfig:
        """The recipe's training settings for a run of ``epochs``."""
        warmup = min(self.train_cfg.warmup_epochs, epochs - 1)
        return dataclasses.replace(
            self.train_cfg, epochs=epochs, warmup_epochs=warmup, early_stop_patience=None
        )

    def __call__(self, candidate: Candidate, epochs: int) -> float:
        # The same seed for every candidate and round: a round compares architectures, not draws.
        torch.manual_seed(self.train_cfg.seed)
        model = candidate.build(self.num_classes, self.in_channels)
        result = distill(
            model,
            self.teacher,
            self.train,
            self.val,
            self.config(epochs),
            self.kd,
            log=None,  # one line per candidate (the caller's), not one per epoch
            cache_dir=self.cache_dir,
            teacher_name=self.teacher_name,
        )
        return float(result.best_val_accuracy)


__all__ = ["ShortTrainer"]
