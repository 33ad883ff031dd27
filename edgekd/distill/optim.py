"""The optimizer and the learning rate of every step: AdamW or SGD over weight-decay groups,
linear warm-up, then a cosine, step or constant schedule (``TrainConfig``)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from edgekd.distill.config import TrainConfig


def lr_at(
    step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig, steps_per_epoch: int | None = None
) -> float:
    """Learning rate for iteration ``step`` (0-based): linear warm-up, then cosine, step or flat.

    ``step`` decays multiply by ``cfg.step_gamma`` every ``cfg.step_size`` epochs after the warm-up.
    """
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        per_epoch = steps_per_epoch or max(1, total_steps // cfg.epochs)
        step_size = cfg.step_size or max(1, cfg.epochs // 3)
        return cfg.lr * cfg.step_gamma ** ((step - warmup_steps) // (per_epoch * step_size))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * progress))


def _param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    # Decaying biases and BatchNorm scales only shrinks them towards zero and hurts
    # small students; decay the weight matrices and kernels alone.
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or Nesterov SGD) over the trainable parameters of ``modules``, at ``cfg.lr``."""
    groups = _param_groups(modules, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The learning rate of each optimizer step: :func:`lr_at` with the run's step counts."""

    cfg: TrainConfig
    steps_per_epoch: int

    def lr(self, step: int) -> float:
        cfg, per_epoch = self.cfg, self.steps_per_epoch
        return lr_at(step, cfg.epochs * per_epoch, cfg.warmup_epochs * per_epoch, cfg, per_epoch)
