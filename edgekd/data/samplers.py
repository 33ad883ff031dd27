"""Seeded samplers: the order of an epoch is a pure function of (seed, epoch).

The sampler lives in the main process and only yields keys; the DataLoader's workers read
them. So the batches are the same with ``num_workers`` 0, 1 or 8, and a resumed run that sets
the same epoch sees the same order. Call ``set_epoch(epoch)`` before each epoch (as with
torch's ``DistributedSampler``).

* :class:`SeededSampler`: a permutation of all samples per epoch, for any map-style dataset.
* :class:`ChunkBatchSampler`: batches made of whole blocks of consecutive source rows (HDF5
  chunks, runs of a memory-mapped file), the blocks in random order and shuffled within, so
  every batch is read as a few contiguous runs instead of scattered rows.

Both take ``rank`` / ``world_size`` to give each DistributedDataParallel process its share
(the last share padded by repeating samples from the start, as ``DistributedSampler`` does),
and ``with_epoch=True`` to yield ``(index, epoch)`` keys: the training views of
:mod:`edgekd.data.mapstyle` datasets, whose randomness is a pure function of (seed, epoch,
index), so persistent workers need not be told the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from edgekd.errors import ConfigError


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch's order: a pure function of (seed, epoch)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")


class _EpochSampler(Sampler):
    """What both samplers share: the epoch, the seed, this rank's share, the keys they yield.
    Their ``**options`` are these keyword arguments."""

    def __init__(
        self,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        with_epoch: bool = False,
    ) -> None:
        _check_shard(rank, world_size)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.rank, self.world_size = int(rank), int(world_size)
        self.with_epoch = bool(with_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration yields (and whose views ``with_epoch`` asks for)."""
        self.epoch = int(epoch)

    def _shard(self, items: np.ndarray) -> np.ndarray:
        """This rank's share of ``items`` (1-D), padded so that every rank gets as many."""
        if self.world_size == 1 or not len(items):
            return items
        total = math.ceil(len(items) / self.world_size) * self.world_size
        padded = np.resize(items, total)  # repeats from the start
        return padded[self.rank :: self.world_size]

    def _key(self, index: int) -> int | tuple[int, int]:
        return (index, self.epoch) if self.with_epoch else index


class SeededSampler(_EpochSampler):
    """Sample indices 0..n-1: a fresh permutation per epoch (or in order with ``shuffle=False``).

    >>> sampler = SeededSampler(10, seed=3); sampler.set_epoch(2)
    >>> loader = DataLoader(dataset, batch_size=64, sampler=sampler, num_workers=2)
    """

    def __init__(self, n: int, **options: Any) -> None:
        """``options``: ``seed`` (0), ``shuffle`` (True), ``rank`` (0), ``world_size`` (1),
        ``with_epoch`` (False), as in the module doc."""
        super().__init__(**options)
        if n < 0:
            raise ConfigError(f"a sampler needs n >= 0 samples, got {n}")
        self.n = int(n)

    def order(self) -> np.ndarray:
        """This rank's indices int64 for the current epoch."""
        base = epoch_rng(self.seed, self.epoch).permutation(self.n) if self.shuffle else np.arange(self.n)
        return self._shard(base.astype(np.int64))

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        for i in self.order().tolist():
            yield self._key(i)

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size) if self.n else 0


def block_rows_for(batch_size: int, chunk_rows: int = 1, blocks_per_batch: int = 8) -> int:
    """Rows per block: about ``batch_size / blocks_per_batch``, rounded up to whole chunks.

    ``chunk_rows`` is the storage chunk of the source (an HDF5 dataset's chunk rows; 1 for a
    contiguous one), so no chunk is split between blocks (and decompressed twice). Each
    batch then mixes about ``blocks_per_batch`` places of the file: a file sorted by class
    (RadioML 2018 is) still gives batches of several classes, unless its chunks are so large
    that one chunk fills a batch.
    """
    if batch_size <= 0 or chunk_rows <= 0 or blocks_per_batch <= 0:
        raise ConfigError(
            f"need positive batch_size, chunk_rows and blocks_per_batch, got "
            f"{batch_size}, {chunk_rows}, {blocks_per_batch}"
        )
    wanted = max(1, batch_size // blocks_per_batch)
    return chunk_rows * math.ceil(wanted / chunk_rows)


class ChunkBatchSampler(_EpochSampler):
    """Batches of dataset indices whose source rows come in a few contiguous runs.

    The source rows are cut into aligned blocks of ``block_rows`` (row // block_rows). Each
    epoch the blocks are put in a random order and the samples of each block shuffled, both
    drawn from (seed, epoch); the batches are consecutive ``batch_size`` samples of that
    sequence, so a batch covers about ``batch_size / block_rows`` blocks (+1).

    Args:
        rows: int [N], the source row of each dataset index (``dataset.rows``).
        batch_size: samples per batch; the last batch is shorter unless ``drop_last``.
        block_rows: rows per block; :func:`block_rows_for` picks it from the batch size and
            the source's chunking.
        options: ``seed``, ``shuffle``, ``rank``, ``world_size``, ``with_epoch``, as in the module
            doc; ``shuffle=False`` yields the samples in row order.
    """

    def __init__(
        self, rows: np.ndarray, batch_size: int, *, block_rows: int, drop_last: bool = False, **options: Any
    ) -> None:
        super().__init__(**options)
        if batch_size <= 0 or block_rows <= 0:
            raise ConfigError(f"need positive batch_size and block_rows, got {batch_size} and {block_rows}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.batch_size, self.block_rows, self.drop_last = int(batch_size), int(block_rows), bool(drop_last)
        _, self._block = np.unique(rows // self.block_rows, return_inverse=True)  # block id per index
        self._block = self._block.reshape(-1)
        self._row_order = np.argsort(rows, kind="stable")  # the unshuffled order: by source row
        self.n = len(rows)

    def _sequence(self) -> np.ndarray:
        if not self.shuffle:
            return self._row_order
        rng = epoch_rng(self.seed, self.epoch)
        block_rank = rng.permutation(int(self._block.max()) + 1 if self.n else 0)
        # Primary key: the block's place in the epoch; secondary: a random order inside it.
        return np.lexsort((rng.permutation(self.n), block_rank[self._block]))

    def batches(self) -> Iterator[np.ndarray]:
        """This rank's batches (int64 arrays of dataset indices) for the current epoch."""
        seq = self._sequence()
        stop = len(seq) - len(seq) % self.batch_size if self.drop_last else len(seq)
        for start in self._shard(np.arange(0, stop, self.batch_size)).tolist():
            yield seq[start : start + self.batch_size]

    def __iter__(self) -> Iterator[list[int | tuple[int, int]]]:
        for batch in self.batches():
            yield [self._key(i) for i in batch.tolist()]

    def __len__(self) -> int:
        count = self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)
        return math.ceil(count / self.world_size) if count else 0


def chunk_batches(
    dataset: Any, batch_size: int, *, blocks_per_batch: int = 8, **options: Any
) -> ChunkBatchSampler:
    """A :class:`ChunkBatchSampler` over ``dataset.rows`` (a map-style dataset of
    :mod:`edgekd.data.mapstyle`) whose blocks are whole storage chunks of its file
    (``dataset.chunk_rows``: HDF5 chunk rows; 1 when contiguous or absent) and about
    ``batch_size / blocks_per_batch`` rows long: each batch mixes ~``blocks_per_batch`` places
    of the file and is read as that many slices.

    ``options`` are the sampler's own: ``seed``, ``shuffle``, ``drop_last``, ``rank``,
    ``world_size``, ``with_epoch`` (see :class:`ChunkBatchSampler`)."""
    block_rows = block_rows_for(batch_size, getattr(dataset, "chunk_rows", 1), blocks_per_batch)
    return ChunkBatchSampler(dataset.rows, batch_size, block_rows=block_rows, **options)
