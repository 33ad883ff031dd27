"""Labelled training frames and unlabelled ones, as one training set.

Distillation on unlabelled frames (:mod:`edgekd.distill.unlabelled`) trains on a set whose
first ``labelled`` rows carry labels and whose other rows are the pool: frames the teacher
labels for the student. :func:`pool_training_frames` builds that set from the two datasets:

* both held in memory: one :class:`~edgekd.data.dataset.ArrayDataset` (the frames copied once,
  side by side), sliced in the training process like any in-memory set;
* both narrowed from the same lazy source (``data.hide_labels`` on RadioML 2018 rows, an image
  cache): the source narrowed to both sets of rows, so a chunked file keeps its block-shuffled
  reads;
* otherwise a :class:`PooledDataset` that reads each row from the dataset it came from, lazily,
  in DataLoader workers like any map-style dataset.

The pool's own labels, if it has any, are never read: its rows carry class 0 as a placeholder,
and the loop marks them unlabelled by position.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgekd.data.batches import in_memory, memory_arrays, network_input_shape
from edgekd.data.dataset import ArrayDataset
from edgekd.data.mapstyle import MapDataset, MemoryDataset
from edgekd.errors import ShapeError

# The per-row arrays take() narrows; every other attribute of a narrowed dataset is shared.
_ROW_ARRAYS = ("rows", "y", "snr", "split")


def _as_map(data: Any) -> MapDataset:
    return data if isinstance(data, MapDataset) else MemoryDataset(data)


def _same_source(a: Any, b: Any) -> bool:
    """Whether two map-style datasets are one lazy source narrowed to different rows."""
    if type(a) is not type(b) or in_memory(a) or not isinstance(a, MapDataset):
        return False
    rest_a = {k: v for k, v in vars(a).items() if k not in _ROW_ARRAYS}
    rest_b = {k: v for k, v in vars(b).items() if k not in _ROW_ARRAYS}
    return rest_a.keys() == rest_b.keys() and all(rest_a[k] is rest_b[k] for k in rest_a)


def check_pool_fits(train: Any, pool: Any, what: str = "the unlabelled frames") -> None:
    """ShapeError unless ``pool``'s frames are what the network takes from ``train``."""
    shape, pool_shape = network_input_shape(train), network_input_shape(pool)
    dtype = getattr(train, "sample_dtype", np.float32)
    pool_dtype = getattr(pool, "sample_dtype", np.float32)
    if shape != pool_shape or dtype != pool_dtype:
        raise ShapeError(
            f"{what} are frames of {list(pool_shape)} ({np.dtype(pool_dtype).name}), "
            f"the labelled {list(shape)} ({np.dtype(dtype).name})",
            hint="give unlabelled frames of the labelled frames' shape and kind (same source and settings)",
        )


def pool_training_frames(train: Any, pool: Any) -> Any:
    """``train``'s frames, then ``pool``'s, as one training set (see the module doc).

    Rows ``0 .. len(train) - 1`` are ``train``'s with their labels, the rest ``pool``'s with a
    placeholder label 0.
    """
    check_pool_fits(train, pool)
    if in_memory(train) and in_memory(pool):
        x_train, y_train = memory_arrays(train)
        x_pool = memory_arrays(pool)[0]
        snr = None
        if train.snr is not None and getattr(pool, "snr", None) is not None:
            snr = np.concatenate([train.snr, pool.snr])
        return ArrayDataset(
            x=np.concatenate([x_train, x_pool]),
            y=np.concatenate([y_train, np.zeros(len(x_pool), dtype=np.int64)]),
            class_names=list(train.class_names),
            snr=snr,
            source=getattr(train, "source", None),
        )
    if _same_source(train, pool):
        pooled = copy.copy(train)
        pooled.rows = np.concatenate([train.rows, pool.rows])
        pooled.y = np.concatenate([train.y, np.zeros(len(pool), dtype=np.int64)])
        pooled.snr = None if train.snr is None or pool.snr is None else np.concatenate([train.snr, pool.snr])
        pooled.split = None
        return pooled
    return PooledDataset(_as_map(train), _as_map(pool))


class PooledDataset(MapDataset):
    """Two map-style datasets end to end: the labelled one's rows, then the pool's.

    Samples are read raw from the dataset each row came from (its own source and decoding);
    the training views (``augment``) are this dataset's, drawn as for any map-style dataset.
    """

    def __init__(self, labelled: MapDataset, pool: MapDataset) -> None:
        n, m = len(labelled), len(pool)
        super().__init__(
            rows=np.arange(n + m),
            y=np.concatenate([labelled.y, np.zeros(m, dtype=np.int64)]),
            class_names=labelled.class_names,
            input_shape=labelled.input_shape,
            source=f"{labelled.source} + unlabelled {pool.source}",
            augment=labelled.augment,
            augment_seed=labelled.augment_seed,
        )
        self.parts = (labelled, pool)
        self.sample_dtype = labelled.sample_dtype
        transform = getattr(labelled, "transform", None)
        if transform is not None:
            self.transform = transform  # how raw pixels become network inputs (model_input)

    def _read(self, rows: np.ndarray) -> list[np.ndarray]:
        labelled, pool = self.parts
        n = len(labelled)
        out: list[Any] = [None] * len(rows)
        for part, mask, offset in ((labelled, rows < n, 0), (pool, rows >= n, n)):
            where = np.flatnonzero(mask)
            if len(where):
                for j, sample in zip(where, part._read(part.rows[rows[where] - offset]), strict=True):
                    out[j] = sample
        return out
