"""Map-style datasets that read one sample (or one batch) at a time, for DataLoader workers.

Every dataset here is a ``torch.utils.data.Dataset`` with the same contract, whether its
samples live in memory (:class:`MemoryDataset`) or are read on access (image files, HDF5
rows, memory-mapped arrays: ``lazy_images``, ``lazy_rml2018``, ``lazy_arrays``):

* ``dataset[i]`` is ``(x, y)``: ``x`` float32 tensor [C, ...] (the evaluation view of sample
  ``i``), ``y`` its class id (int). Image datasets built with ``raw=True`` give uint8 pixels
  instead (``sample_dtype``), a quarter of the bytes to move, normalised on the device by
  :func:`edgekd.data.lazy_images.normalize_batch`;
* ``dataset[(i, epoch)]`` is the training view of sample ``i`` in ``epoch``: ``x`` passed
  through the dataset's ``augment(x, seed)`` with ``seed = sample_seed(augment_seed, epoch, i)``,
  a pure function of (seed, epoch, index), so any worker, in any process, draws the same view
  (samplers built with ``with_epoch=True`` yield these keys, see :mod:`edgekd.data.samplers`);
* ``dataset.__getitems__(keys)`` returns the list of those pairs. ``DataLoader`` calls it with a
  whole batch of keys, so a source reads a batch in one go (HDF5 rows in runs);
* ``dataset.read_batch(keys)`` is the same batch already collated, ``(x [B, ...], y [B], idx
  [B])``: without per-sample augmentation it is one read of the source (one fancy index into
  a memory map) turned into one tensor, no per-sample tensors, ints or ``torch.stack``. The
  training feed and :func:`edgekd.data.batches.iter_batches` read through it (:class:`BatchReads`);
* metadata, known when the dataset is opened (nothing is decoded for it): ``class_names``,
  ``num_classes``, ``input_shape`` (one sample, no batch axis), ``y`` int64 [N], ``snr``
  int16 [N] (dB) or None, ``split`` int8 [N] (0 train, 1 val, 2 test) or None, ``len()``;
* ``take(indices)``, ``subset("train")``: the same source narrowed to some samples (a view:
  nothing is read).

Subclasses implement :meth:`MapDataset._read` (template method): samples float32 at the given
positions of their source. The ``y``, ``snr`` and ``split`` arrays are this dataset's (index
``i``); ``rows[i]`` is the position of sample ``i`` in the source (the file row, the image in
the folder listing).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekd.data.dataset import ArrayDataset, SplitsMixin
from edgekd.data.images import view_seed
from edgekd.errors import InputFileError

# augment(x [C, ...], seed) -> x' of the same shape and dtype: a pure function of its arguments.
Augment = Callable[[np.ndarray, int], np.ndarray]
Key = int | tuple[int, int]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s random view in ``epoch``: a 63-bit int, stable across runs,
    processes and platforms (the same number as :func:`edgekd.data.images.view_seed`)."""
    return view_seed(seed, epoch, index)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that is a pure function of (seed, epoch, index): draw all of one sample's
    randomness in one epoch from it, and any worker reproduces the same view.

    >>> a = sample_rng(0, 3, 17).random(); b = sample_rng(0, 3, 17).random(); a == b
    True
    """
    return np.random.default_rng(sample_seed(seed, epoch, index))


class MapDataset(SplitsMixin, Dataset):
    """Base of the map-style datasets (see the module doc for the contract).

    ``sample_dtype`` (float32, or uint8 for raw image pixels) is the dtype of every ``x``.

    Args:
        rows: int64 [N], position of each sample in the source.
        y: int64 [N] class ids, indices into ``class_names``.
        class_names: [K] names, K >= 2.
        input_shape: shape of one sample, without the batch axis.
        snr: int16 [N] dB, or None; split: int8 [N] codes, or None.
        source: what the samples come from, for messages ("image folder OCT2017").
        augment: ``augment(x, seed)`` for the training views ``dataset[(i, epoch)]``; None:
            a training view is the evaluation view.
        augment_seed: the base seed of the training views.
    """

    sample_dtype: type = np.float32

    def __init__(
        self,
        *,
        rows: np.ndarray,
        y: np.ndarray,
        class_names: Sequence[str],
        input_shape: tuple[int, ...],
        snr: np.ndarray | None = None,
        split: np.ndarray | None = None,
        source: str = "dataset",
        augment: Augment | None = None,
        augment_seed: int = 0,
    ) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]
        self.input_shape = tuple(int(d) for d in input_shape)
        self.snr = None if snr is None else np.asarray(snr, dtype=np.int16)
        self.split = None if split is None else np.asarray(split, dtype=np.int8)
        self.source = source
        self.augment = augment
        self.augment_seed = int(augment_seed)
        n = len(self.rows)
        for name in ("y", "snr", "split"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise InputFileError(f"{source}: {name} has shape {list(arr.shape)}; expected [{n}]")

    # --- the hook ---

    def _read(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        """Samples at source positions ``rows`` (int64 [n], any order, repeats allowed):
        n writable arrays of ``input_shape`` and ``sample_dtype`` (an array [n, ...] or a list)."""
        raise NotImplementedError

    # --- the contract ---

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def nbytes(self) -> int:
        """Bytes of all samples as float32: what holding the dataset in memory would take."""
        return len(self) * 4 * math.prod(self.input_shape)

    def _index(self, index: Any) -> int:
        return int(self._positions(np.asarray([int(index)], dtype=np.int64))[0])

    def _positions(self, index: np.ndarray) -> np.ndarray:
        """``index`` int64 [n] checked against this dataset's length, negatives wrapped: one
        vectorised check per batch, not a Python call per key."""
        n = len(self)
        if len(index):
            low, high = int(index.min()), int(index.max())
            if low < -n or high >= n:
                bad = low if low < -n else high
                raise IndexError(f"sample index {bad} out of range for {n} samples of {self.source}")
            if low < 0:
                index = np.where(index < 0, index + n, index)
        return index

    def _split_keys(self, keys: Sequence[Key] | np.ndarray) -> tuple[np.ndarray, list[int | None]]:
        """Sample indices int64 [n] and the epoch of each key (None: the evaluation view).

        ``keys``: ints, ``(index, epoch)`` pairs, or an int array (evaluation views)."""
        if isinstance(keys, (np.ndarray, torch.Tensor)):
            index = self._positions(np.asarray(keys, dtype=np.int64).reshape(-1))
            return index, [None] * len(index)
        pair = [isinstance(key, (tuple, list)) for key in keys]
        index = [key[0] if p else key for key, p in zip(keys, pair, strict=True)]
        epochs = [int(key[1]) if p else None for key, p in zip(keys, pair, strict=True)]
        as_ints = [int(i) for i in index] if any(not isinstance(i, int) for i in index) else index
        return self._positions(np.asarray(as_ints, dtype=np.int64)), epochs

    def __getitems__(self, keys: Sequence[Key]) -> list[tuple[torch.Tensor, int]]:
        index, epochs = self._split_keys(keys)
        samples = self._read(self.rows[index]) if len(index) else []
        out = []
        for i, epoch, x in zip(index.tolist(), epochs, samples, strict=True):
            if epoch is not None and self.augment is not None:
                x = self.augment(x, sample_seed(self.augment_seed, epoch, i))
            out.append((torch.from_numpy(np.ascontiguousarray(x, dtype=self.sample_dtype)), int(self.y[i])))
        return out

    def read_batch(self, keys: Sequence[Key] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The samples of ``keys`` as one batch: ``x`` [B, *input_shape] (``sample_dtype``),
        ``y`` int64 [B], ``idx`` int64 [B] (the sample indices), the collated
        ``__getitems__(keys)``.

        The batch is one ``_read`` of the source turned into one tensor, the per-sample work
        skipped, unless a key asks for a training view of a dataset that augments (each
        sample its own view) or ``__getitems__`` is not this class's own (a subclass, or a
        wrapper set on the instance, that reads or records in its own way): then it goes
        through ``__getitems__``.
        """
        index, epochs = self._split_keys(keys)
        own = "__getitems__" not in vars(self) and type(self).__getitems__ is MapDataset.__getitems__
        if not len(index):
            x = _as_batch(np.empty((0, *self.input_shape)), self.sample_dtype)
        elif not own or (self.augment is not None and any(e is not None for e in epochs)):
            x = torch.stack([x for x, _ in self.__getitems__(keys)])
        else:
            x = _as_batch(self._read(self.rows[index]), self.sample_dtype)
        return x, torch.from_numpy(self.y[index]), torch.from_numpy(index)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        return self.__getitems__([key])[0]

    def take(self, indices: np.ndarray | Sequence[int]) -> MapDataset:
        """The samples at ``indices`` (int [n], into this dataset), as a dataset of the same kind."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"take: index out of range for {len(self)} samples of {self.source}")
        out = copy.copy(self)
        out.rows, out.y = self.rows[idx], self.y[idx]
        out.snr = None if self.snr is None else self.snr[idx]
        out.split = None if self.split is None else self.split[idx]
        return out

    def to_array_dataset(self, block: int = 1024) -> ArrayDataset:
        """Every sample's evaluation view, read into memory: x float32 [N, *input_shape]."""
        x = np.empty((len(self), *self.input_shape), dtype=np.float32)
        for start in range(0, len(self), block):
            rows = self.rows[start : start + block]
            for j, sample in enumerate(self._read(rows)):
                x[start + j] = sample
        return ArrayDataset(
            x=x, y=self.y, class_names=self.class_names, snr=self.snr, split=self.split, source=self.source
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source}: {len(self)} samples of {list(self.input_shape)}, "
            f"{self.num_classes} classes)"
        )


class MemoryDataset(MapDataset):
    """An in-memory :class:`~edgekd.data.dataset.ArrayDataset` behind the map-style contract
    (small sets, and the demo's synthetic data). ``take`` shares the frames, never copies them."""

    def __init__(self, data: ArrayDataset, *, augment: Augment | None = None, augment_seed: int = 0) -> None:
        super().__init__(
            rows=np.arange(len(data)),
            y=data.y,
            class_names=data.class_names,
            input_shape=data.input_shape,
            snr=data.snr,
            split=data.split,
            source=data.source or "in-memory dataset",
            augment=augment,
            augment_seed=augment_seed,
        )
        self.data = data

    def _read(self, rows: np.ndarray) -> np.ndarray:
        return self.data.x[rows]  # fancy indexing: a writable copy


class IndexedDataset(Dataset):
    """``dataset`` with each sample's index: ``(x, y, i)``, for a loop that looks samples up
    by index (the teacher-logit cache, per-sample weights). Keys pass through unchanged."""

    def __init__(self, dataset: MapDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: Sequence[Key]) -> list[tuple[torch.Tensor, int, int]]:
        pairs = self.dataset.__getitems__(keys)
        index = self.dataset._split_keys(keys)[0].tolist()  # one vectorised check, not one per key
        return [(x, y, i) for (x, y), i in zip(pairs, index, strict=True)]

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int, int]:
        return self.__getitems__([key])[0]


class BatchReads(Dataset):
    """``dataset`` read a whole batch per key: ``reads[keys]`` is ``dataset.read_batch(keys)``,
    ``(x [B, ...], y [B], idx [B])``. A ``DataLoader(BatchReads(d), sampler=batches_of_keys,
    batch_size=None)`` then hands each batch over as read, without per-sample collation."""

    def __init__(self, dataset: MapDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, batches: Sequence[Any]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [self.dataset.read_batch(keys) for keys in batches]

    def __getitem__(self, keys: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.dataset.read_batch(keys)


def _as_batch(samples: Sequence[np.ndarray], dtype: type) -> torch.Tensor:
    """``_read``'s samples (an array [n, ...] or a list of n arrays) as one tensor of ``dtype``."""
    batch = samples if isinstance(samples, np.ndarray) else np.stack(samples)
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=dtype))
