"""Distillation on unlabelled frames: the teacher labels what the student never sees labels for.

RF captures and OCT scans are cheap; labels are not. With an unlabelled pool the training set
is the labelled frames followed by the pool's (:func:`edgekd.data.pooled.pool_training_frames`):

* the teacher cache covers every frame of both, in every augmentation view;
* the loop marks pool rows with the target :data:`UNLABELLED` (by position: rows
  ``>= labelled`` are the pool's), so the objective's label terms (``ce``, the CE half of
  ``kd``) average over the labelled rows of the batch alone, and the other terms see every
  row; a term that needs a class index (``dkd``, ``nkd``, ``ofa``...) gets the teacher's top-1
  class for a pool row (:func:`pseudo_targets`);
* ``distill.kd.unlabelled_share`` sets the share of pool frames in each batch
  (:func:`mixed_order`); "auto" shuffles both together, their shares then those of the set.

An epoch is one pass's worth of batches over labelled + pool frames, whichever share is set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edgekd.data.splits import class_snr_cells, rank_within_strata

#: The target of a frame without a label (``ignore_index`` of the label terms).
UNLABELLED = -1


def mark_unlabelled(y: torch.Tensor, idx: torch.Tensor, labelled: int | None) -> torch.Tensor:
    """``y`` with :data:`UNLABELLED` at the rows ``idx >= labelled`` (the pool's); ``y`` as it is
    for a run without a pool (``labelled`` None)."""
    if labelled is None:
        return y
    return torch.where(idx.to(y.device) < labelled, y, torch.full_like(y, UNLABELLED))


def pseudo_targets(targets: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
    """``targets`` with each unlabelled row's class taken from the teacher's top-1 (for terms that
    need a class index on every row); unchanged without a teacher."""
    if teacher_logits is None:
        return targets
    return torch.where(targets >= 0, targets, teacher_logits.argmax(dim=1))


def mixed_order(
    rng: np.random.Generator,
    permute: Callable[[np.ndarray], np.ndarray],
    labelled: int,
    frames: int,
    batch_size: int,
    share: float,
) -> np.ndarray:
    """One epoch's rows (int64 [frames]), cut into batches of ``batch_size`` whose share of pool
    rows (``>= labelled``) is ``share`` (rounded per batch; at least one row of each kind in a
    batch of two or more).

    Each kind is drawn from ``permute`` (a seeded shuffle of the rows it is given: plain or
    block-shuffled), starting again with a fresh shuffle when it runs out: a kind whose share
    exceeds its size in the set is seen more than once per epoch, the other less.
    """
    streams = {
        False: _Stream(permute, np.arange(labelled)),
        True: _Stream(permute, np.arange(labelled, frames)),
    }
    order = np.empty(frames, dtype=np.int64)
    for start in range(0, frames, batch_size):
        size = min(batch_size, frames - start)
        pool = pool_rows(size, share)
        rows = np.concatenate([streams[False].take(size - pool), streams[True].take(pool)])
        order[start : start + size] = rng.permutation(rows)  # kinds mixed within the batch
    return order


def pool_rows(size: int, share: float) -> int:
    """Pool rows in a batch of ``size``: ``share`` of it, leaving each kind one row at least."""
    if size < 2:
        return 0
    return min(max(round(share * size), 1), size - 1)


class _Stream:
    """Rows of one kind, reshuffled each time they run out."""

    def __init__(self, permute: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> None:
        self.permute, self.rows = permute, rows
        self.pending = np.empty(0, dtype=np.int64)

    def take(self, count: int) -> np.ndarray:
        while len(self.pending) < count:
            self.pending = np.concatenate([self.pending, self.permute(self.rows)])
        out, self.pending = self.pending[:count], self.pending[count:]
        return out


def hidden_label_rows(
    y: np.ndarray, snr: np.ndarray | None, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows that keep their labels, rows whose labels are hidden) of a train split with labels
    ``y`` (and SNRs): ``share`` of every (class, SNR) cell hidden, drawn with ``seed``, each cell
    keeping one labelled frame at least. Both sorted."""
    rank, size = rank_within_strata(class_snr_cells(y, snr), np.random.default_rng(seed))
    hidden = rank < np.minimum(np.floor(share * size), size - 1)
    return np.flatnonzero(~hidden), np.flatnonzero(hidden)
