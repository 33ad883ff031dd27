"""How training batches reach the step: sliced from memory, or read by DataLoader workers.

The batch order is :class:`~edgekd.distill.run_state.ShuffledBatches`' in both cases (the
saved sampler state), so a run gives the same batches with 0, 1 or 8 workers, and a resumed
run, mid-epoch included, takes up at the very batch where the snapshot was taken.

* :class:`MemoryFeed`: the training frames are one array in this process (the demo, RML2016,
  anything that fits: :func:`edgekd.data.storage.choose_storage`); a batch is an index into
  it. No workers, no copies beyond the batch: the fastest path for small frames.
* :class:`LoaderFeed`: a lazy dataset (images, an image cache, HDF5 rows, a memory map) read
  a batch at a time (:meth:`edgekd.data.mapstyle.MapDataset.read_batch`: one read of the
  source, one tensor, no per-sample collation unless the dataset augments each sample). With
  workers, by a ``torch.utils.data.DataLoader`` with persistent workers, pinned memory on
  CUDA and a few batches prefetched per worker; with 0 (a memory map in the page cache under
  "auto": :func:`edgekd.data.batches.resolve_workers`), in this process without a
  DataLoader, as :class:`MemoryFeed` slices. Each key is ``(index, view)`` when the dataset
  augments: the view's randomness is a pure function of (seed, view, index)
  (:func:`edgekd.data.mapstyle.sample_seed`), so the worker that reads a sample draws exactly
  the view the teacher cache scored. Under torchrun each rank's loader reads only that
  rank's rows of each global batch.

Both yield ``(b, x, y, idx)``: the batch number in the epoch, the samples as the dataset
gives them (uint8 pixels stay uint8 until :func:`edgekd.data.batches.model_input` on the
device), int64 labels and the dataset positions (CPU tensors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from edgekd.data.batches import in_memory, loader_options, memory_arrays, resolve_workers
from edgekd.data.mapstyle import BatchReads
from edgekd.data.worker_errors import CarryErrors, carried_errors
from edgekd.distill.run_state import ShuffledBatches

Batch = tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]


class MemoryFeed:
    """Batches sliced from the training arrays held in this process."""

    workers = 0

    def __init__(self, train: Any) -> None:
        x, y = memory_arrays(train)
        self.x, self.y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y))

    def epoch(self, sampler: ShuffledBatches, view: int | None) -> Iterator[Batch]:
        for b, idx in sampler.remaining():
            yield b, self.x[idx], self.y[idx], idx

    def close(self) -> None:
        pass


def batch_keys(idx: torch.Tensor, view: int | None) -> np.ndarray | list[tuple[int, int]]:
    """The dataset keys of rows ``idx``: the rows as an int64 array (evaluation views, one
    read of the source), or ``(row, view)`` pairs for a dataset that draws training views."""
    return idx.numpy() if view is None else [(i, view) for i in idx.tolist()]


class _EpochKeys:
    """The DataLoader's sampler: the rest of the epoch's batches, each one item of dataset keys.

    It runs in the training process; the DataLoader asks for a fresh iteration at the start
    of every epoch, after ``ShuffledBatches.start_epoch`` has set the order and the batch to
    start from (a resumed epoch starts mid-way).
    """

    def __init__(self, sampler: ShuffledBatches) -> None:
        self.sampler = sampler
        self.view: int | None = None  # the epoch's view, for a dataset that augments

    def __iter__(self) -> Iterator[np.ndarray | list]:
        for _b, idx in self.sampler.remaining():
            yield batch_keys(idx, self.view)

    def __len__(self) -> int:
        return len(self.sampler) - self.sampler.next_batch


class LoaderFeed:
    """Batches of a lazy dataset, read by DataLoader workers or, with 0 workers, in this
    process without a DataLoader (see the module doc)."""

    def __init__(self, train: Any, sampler: ShuffledBatches, workers: int, device: torch.device) -> None:
        self.workers, self.train = workers, train
        self.augments = getattr(train, "augment", None) is not None
        self.pin = device.type == "cuda"
        self.keys = _EpochKeys(sampler)
        self.loader: Any = None
        if workers:
            self.loader = torch.utils.data.DataLoader(
                CarryErrors(BatchReads(train)),
                sampler=self.keys,
                batch_size=None,  # each item is a whole batch, collated by the dataset
                persistent_workers=True,
                **loader_options(workers, pin_memory=self.pin, batched=True),
            )

    def epoch(self, sampler: ShuffledBatches, view: int | None) -> Iterator[Batch]:
        self.keys.view = view if self.augments else None
        if self.loader is None:
            yield from self._read_here(sampler)
            return
        with carried_errors():  # a bad file met in a worker: the one-line error that names it
            for b, (x, y, idx) in enumerate(self.loader, start=sampler.next_batch):
                yield b, x, y, idx

    def _read_here(self, sampler: ShuffledBatches) -> Iterator[Batch]:
        """0 workers: each batch read in this process, where a DataLoader would only add its
        per-batch overhead (an error is raised here as it is, already one line)."""
        for b, idx in sampler.remaining():
            x, y, rows = self.train.read_batch(batch_keys(idx, self.keys.view))
            if self.pin:  # as the DataLoader's pin_memory: an asynchronous copy to the GPU
                x, y = x.pin_memory(), y.pin_memory()
            yield b, x, y, rows

    def close(self) -> None:
        """Stop the persistent workers now, not when the loader is garbage-collected: later
        stages of the same command (export, a remote bench over ssh) should not run beside
        idle forked workers."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            with contextlib.suppress(Exception):  # already stopped, or never started
                iterator._shutdown_workers()
        self.loader = None


def make_feed(train: Any, sampler: ShuffledBatches, workers: int | str | None, device: torch.device):
    """:class:`MemoryFeed` for data held in memory, :class:`LoaderFeed` otherwise (``workers``:
    :func:`edgekd.data.batches.resolve_workers`; 0 reads lazy data in this process)."""
    if in_memory(train) and getattr(train, "augment", None) is None:
        return MemoryFeed(train)
    return LoaderFeed(train, sampler, resolve_workers(workers, train), device)


def storage_blocks(train: Any, batch_size: int) -> np.ndarray | None:
    """The storage block of each training row when ``train`` is read from a chunked file (an
    HDF5 dataset: ``chunk_rows``), for a block-shuffled batch order
    (:class:`~edgekd.distill.run_state.ShuffledBatches`); None for everything else.

    Blocks are about ``batch_size / 8`` rows, whole chunks each
    (:func:`edgekd.data.samplers.block_rows_for`): a batch then mixes some 8 places of the file,
    several classes even in a file sorted by class, and is read as that many slices.
    """
    chunk_rows = getattr(train, "chunk_rows", None)
    if chunk_rows is None or in_memory(train):
        return None
    from edgekd.data.samplers import block_rows_for

    return np.asarray(train.rows) // block_rows_for(batch_size, int(chunk_rows))
