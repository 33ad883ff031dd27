"""A recipe's unlabelled frames: ``data.unlabelled`` (a second source) and ``data.hide_labels``.

``data.unlabelled`` takes any data source, with the keys of ``data``; its labels and splits,
if it has any, are ignored and every frame is used. An ``npz`` pool needs only ``x`` (frames
[N, C, L] or [N, C, H, W]): captures nobody labelled. A large uncompressed one is memory-mapped
and read lazily, as the labelled data is; the other sources load as
:func:`edgekd.data.storage.open_map_dataset` opens them.

``data.hide_labels`` takes that share of the train split's frames as unlabelled (stratified by
class and SNR, with a fixed seed), so that the teacher stage and the student's label terms see
the rest alone: the semi-supervised experiment on a fully labelled set.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import ArrayDataset, read_npz_arrays
from edgekd.data.lazy_arrays import ArrayFileDataset, CompressedArrayError, locate_frames
from edgekd.data.mapstyle import MapDataset
from edgekd.data.sources import DATA_SOURCES, LAZY_SOURCES, DataSpec, describe_source
from edgekd.data.storage import choose_storage, open_map_dataset
from edgekd.data.validate import check_finite, check_frame_layout, validate_dataset
from edgekd.errors import InputFileError

#: The seed of the frames ``data.hide_labels`` hides: the teacher and distill stages draw the same.
HIDE_LABELS_SEED = 0
# Placeholder classes of a pool read without labels (never used: the labelled set's classes are).
POOL_CLASSES = ["unlabelled", "-"]
POOL_NPZ_HINT = "an unlabelled npz holds x [N, C, L] or [N, C, H, W] (y, if present, is ignored)"


class PoolFileDataset(ArrayFileDataset):
    """The frames ``x`` of an uncompressed npz, memory-mapped, without labels (class 0 each)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._where = f"unlabelled frames {self.path}"
        self._located = locate_frames(self.path)
        self._x: Any = None
        self._pid = -1
        x = self._frames()
        check_frame_layout(x, self._where)
        MapDataset.__init__(
            self,
            rows=np.arange(len(x)),
            y=np.zeros(len(x), dtype=np.int64),
            class_names=POOL_CLASSES,
            input_shape=tuple(x.shape[1:]),
            source=self._where,
        )


def _npz_pool(path: Path, storage: str) -> Any:
    where = f"unlabelled frames {path}"
    if not zipfile.is_zipfile(path):
        raise InputFileError(f"{where} is not an npz file", hint=POOL_NPZ_HINT)
    if storage != "memory":
        try:
            lazy = PoolFileDataset(path)
        except CompressedArrayError:
            lazy = None  # compressed: readable whole only
        if lazy is not None and choose_storage(lazy.nbytes, storage) == "lazy":
            return lazy
    arrays = read_npz_arrays(path, where)
    if "x" not in arrays:
        raise InputFileError(f"{where} holds no array x", hint=POOL_NPZ_HINT)
    x = arrays["x"]
    check_frame_layout(x, where)
    x = np.asarray(x, dtype=np.float32)
    check_finite(x, f"{where}: x")
    return ArrayDataset(x=x, y=np.zeros(len(x), dtype=np.int64), class_names=POOL_CLASSES, source=where)


def open_unlabelled_file(path: Path, storage: str = "auto") -> Any:
    """Unlabelled frames from an npz file holding ``x`` (memory-mapped when large)."""
    return _npz_pool(Path(path), storage)


def open_unlabelled(spec: DataSpec, resolve: Callable[[str], Path] = Path) -> Any:
    """The frames of a recipe's ``data.unlabelled`` section (see the module doc): an in-memory
    dataset or a lazy map-style one, its labels never read."""
    spec.validate()
    path = resolve(spec.path) if spec.path else Path()
    if spec.path and not path.exists():
        raise InputFileError(
            f"data.unlabelled.path {path} does not exist",
            hint="set data.unlabelled.path to the unlabelled frames",
        )
    if spec.source == "npz":
        return _npz_pool(path, spec.storage)
    where = f"data.unlabelled ({describe_source(spec, path)})"
    if spec.source not in LAZY_SOURCES:  # read whole: its splits, if any, do not matter here
        return validate_dataset(DATA_SOURCES.get(spec.source)(spec, path, **spec.options), where)
    try:
        return open_map_dataset(spec, resolve, spec.storage)
    except InputFileError as exc:  # the lazy loaders check their splits: name the section
        raise InputFileError(f"{where}: {exc.message}", hint=exc.hint) from None


def split_hidden_labels(train: Any, share: float) -> tuple[Any, Any]:
    """(the train frames that keep their labels, those whose labels ``data.hide_labels`` hides,
    or None for a share of 0): both narrowed from ``train`` (:meth:`take`), nothing read."""
    if not share:
        return train, None
    from edgekd.distill.unlabelled import hidden_label_rows

    keep, hidden = hidden_label_rows(np.asarray(train.y), train.snr, share, HIDE_LABELS_SEED)
    return train.take(keep), train.take(hidden)


def unlabelled_frames(spec: DataSpec, train: Any, resolve: Callable[[str], Path] = Path) -> tuple[Any, Any]:
    """(labelled training frames, unlabelled frames or None) for a recipe's data section: the
    train split less what ``data.hide_labels`` hides, and the hidden frames then
    ``data.unlabelled``'s."""
    from edgekd.data.pooled import pool_training_frames

    labelled, hidden = split_hidden_labels(train, spec.hide_labels)
    extra = open_unlabelled(spec.unlabelled, resolve) if spec.unlabelled is not None else None
    if hidden is None or extra is None:
        return labelled, hidden if extra is None else extra
    return labelled, pool_training_frames(hidden, extra)
