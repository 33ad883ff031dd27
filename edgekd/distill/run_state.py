"""Everything an exact resume needs, in one object: :class:`RunState`.

``RunState.state_dict()`` is the body of ``train_state.pt`` (``edgekd.distill.state`` adds
the format tag and the run's fingerprint); ``load_state_dict`` puts a run back where the
snapshot was taken: weights, projectors, optimizer moments, GradScaler, EMA, the global
random states, the batch order (:class:`ShuffledBatches`), the epoch's running loss, the
history and the best weights so far. Plain types and tensors only, so the file loads with
``torch.load(weights_only=True)``.

The learning rate is a pure function of the step (``loop.lr_at``), so ``step`` *is* the
scheduler's state.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.distill import distributed as ddp
from edgekd.distill.unlabelled import mixed_order

#: Top-level keys of ``RunState.state_dict()``.
STATE_KEYS = (
    "epoch",
    "step",
    "model",
    "objective",
    "optimizer",
    "scaler",
    "ema",
    "rng",
    "sampler",
    "epoch_loss",
    "records",
)


class ModelEMA:
    """Exponential moving average of a model's floating-point state (weights and BN statistics)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()  # safe: nn.Module.eval(), inference mode
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, live in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema.dtype.is_floating_point:
                ema.lerp_(live.detach(), 1.0 - self.decay)
            else:
                ema.copy_(live)


class ShuffledBatches:
    """Which dataset rows each optimizer step takes: a seeded permutation of the rows per
    epoch, cut into global batches (``distributed.global_batches``), this rank's share of each.

    The one place the batch order comes from, whether the batches are sliced from memory or
    read by DataLoader workers (``edgekd.distill.feed``). State: the numpy Generator, the
    epoch's order (None between epochs) and the next batch in it.

    ``blocks`` (int [frames], the storage block of each row, e.g. an HDF5 chunk run:
    :func:`edgekd.data.samplers.block_rows_for`) makes the order block-shuffled: the blocks in
    random order, the rows shuffled within each, so a batch is read as a few contiguous runs
    of the file instead of scattered rows.
    """

    def __init__(
        self,
        frames: int,
        batch_size: int,
        ctx: ddp.DistContext,
        seed: int,
        blocks: np.ndarray | None = None,
        mix: tuple[int, float] | None = None,
    ) -> None:
        self.frames, self.batch_size, self.ctx = frames, batch_size, ctx
        # (labelled rows, share of pool rows per batch): batches mixed to that share
        # (edgekd.distill.unlabelled.mixed_order); None: one shuffle of every row.
        self.mix = mix
        self.blocks = (
            None if blocks is None else np.unique(np.asarray(blocks), return_inverse=True)[1].reshape(-1)
        )
        self.rng = np.random.default_rng(seed)
        self.order: torch.Tensor | None = None  # int64 [frames]
        self.next_batch = 0
        self._batches: list[torch.Tensor] = []

    @property
    def steps_per_epoch(self) -> int:
        return len(ddp.global_batches(torch.arange(self.frames), self.batch_size, self.ctx.world_size))

    def start_epoch(self) -> bool:
        """Draw the epoch's order unless a resumed epoch is under way; True for a fresh epoch."""
        fresh = self.order is None
        if fresh:
            self.order = torch.from_numpy(self._draw_order())
            self.next_batch = 0
        self._batches = ddp.global_batches(self.order, self.batch_size, self.ctx.world_size)
        return fresh

    def _draw_order(self) -> np.ndarray:
        if self.mix is not None:
            labelled, share = self.mix
            return mixed_order(self.rng, self._permute, labelled, self.frames, self.batch_size, share)
        return self._permute(np.arange(self.frames))

    def _permute(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` in a seeded random order: block-shuffled when the rows have storage blocks."""
        if self.blocks is None:
            return self.rng.permutation(rows)
        blocks = self.blocks[rows]
        block_rank = self.rng.permutation(int(self.blocks.max()) + 1 if self.frames else 0)
        # Primary key: the block's place in the epoch; secondary: a random order inside it.
        return rows[np.lexsort((self.rng.permutation(len(rows)), block_rank[blocks]))]

    def __len__(self) -> int:
        """Batches in the epoch under way."""
        return len(self._batches)

    def remaining(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(batch number, this rank's rows [B]) from ``next_batch`` to the epoch's end.

        The caller moves ``next_batch`` past each batch once its step is done.
        """
        for b in range(self.next_batch, len(self._batches)):
            yield b, ddp.shard(self._batches[b], self.ctx)

    def end_epoch(self) -> None:
        self.order, self.next_batch, self._batches = None, 0, []

    def state_dict(self) -> dict[str, Any]:
        return {"numpy": self.rng.bit_generator.state, "order": self.order, "next_batch": self.next_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.order, self.next_batch = state["order"], state["next_batch"]


class EpochLoss:
    """The epoch's summed training loss (a device tensor: no host sync per step) and rows seen."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.rows = 0

    def add(self, loss: torch.Tensor, rows: int) -> None:
        """Add a batch's mean ``loss`` (a scalar tensor) over ``rows`` rows."""
        self.total = self.total + loss.detach().to(self.total.dtype) * rows
        self.rows += rows

    def mean(self, ctx: ddp.DistContext) -> float:
        """The mean loss per row over every rank (a collective; syncs the device)."""
        rows = torch.tensor(float(self.rows), dtype=torch.float64, device=self.device)
        totals = ddp.all_reduce_sum(torch.stack([self.total, rows]), ctx).cpu()
        return float(totals[0]) / max(1.0, float(totals[1]))

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.total.cpu(), "seen": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.rows = state["loss_sum"].to(self.device), state["seen"]


@dataclasses.dataclass
class EpochRecords:
    """One record per finished epoch, the best epoch's weights so far, and early stopping."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the evaluated model's state
    bad_epochs: int = 0  # epochs since the best one
    stopped_early: bool = False

    def add(self, record: dict[str, Any], model: nn.Module, patience: int | None) -> bool:
        """Append ``record`` (``epoch``, ``val_accuracy``...); keep ``model``'s weights when they
        are the best so far. True when they are."""
        self.history.append(record)
        improved = record["val_accuracy"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch, self.bad_epochs = record["val_accuracy"], record["epoch"], 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.stopped_early = patience is not None and self.bad_epochs >= patience
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, state[f.name])


def global_rng_states() -> dict[str, Any]:
    """The process-wide random states the loop consumes: torch (CPU, CUDA) and python."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def restore_global_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])


@dataclasses.dataclass
class RunState:
    """A training run's state between two optimizer steps; see the module docstring."""

    model: nn.Module  # the student
    objective: nn.Module  # its projectors and learnable loss parameters
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    sampler: ShuffledBatches
    loss: EpochLoss
    records: EpochRecords = dataclasses.field(default_factory=EpochRecords)
    epoch: int = 1  # 1-based: the epoch under way, or the next one between epochs
    step: int = 0  # optimizer steps taken, over all epochs

    @property
    def eval_model(self) -> nn.Module:
        """What validation and the saved weights use: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def networks(self) -> list[nn.Module]:
        """Every module with trained state (their buffers are kept equal across ranks)."""
        return [self.model, self.objective] + ([self.ema.module] if self.ema is not None else [])

    def next_epoch(self) -> None:
        self.epoch += 1
        self.sampler.end_epoch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "rng": global_rng_states(),
            "sampler": self.sampler.state_dict(),
            "epoch_loss": self.loss.state_dict(),
            "records": self.records.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        restore_global_rng_states(state["rng"])
        self.sampler.load_state_dict(state["sampler"])
        self.loss.load_state_dict(state["epoch_loss"])
        self.records.load_state_dict(state["records"])
        self.epoch, self.step = state["epoch"], state["step"]


def from_v1_layout(flat: dict[str, Any]) -> dict[str, Any]:
    """A state saved as ``edgekd.train-state/1`` (one flat dict) in today's layout; same values.

    Raises KeyError for a missing entry.
    """
    rng = flat["rng"]
    records = ("history", "best_acc", "best_epoch", "best_state", "bad_epochs", "stopped_early")
    return {
        "epoch": flat["epoch"],
        "step": flat["step"],
        **{k: flat[k] for k in ("model", "objective", "optimizer", "scaler", "ema")},
        "rng": {k: rng[k] for k in ("torch", "cuda", "python")},
        "sampler": {"numpy": rng["numpy"], "order": flat["order"], "next_batch": flat["next_batch"]},
        "epoch_loss": {"loss_sum": flat["loss_sum"], "seen": flat["seen"]},
        "records": {k: flat[k] for k in records},
    }
