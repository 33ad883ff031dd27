"""In-memory labelled arrays with per-frame metadata, and their npz file format.

A dataset is ``x`` float32 [N, C, L] (for IQ frames C=2: I and Q), integer class
labels ``y`` [N], the class names, an optional SNR label in dB per frame, and a
split code per frame (0 train, 1 val, 2 test). The npz file is read with
``allow_pickle=False``: it holds plain arrays only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, write_manifest
from edgekd.errors import ConfigError, InputFileError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class ArrayDataset:
    x: np.ndarray  # float32 [N, C, L]
    y: np.ndarray  # int64 [N]
    class_names: list[str]
    snr: np.ndarray | None = None  # int16 [N], dB
    split: np.ndarray | None = None  # int8 [N], index into SPLITS

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        if self.snr is not None:
            self.snr = np.asarray(self.snr, dtype=np.int16)
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=np.int8)
        self.class_names = [str(c) for c in self.class_names]
        self._check()

    def _check(self) -> None:
        n = len(self.x)
        if self.x.ndim < 2:
            raise InputFileError(f"dataset x has shape {self.x.shape}; expected [N, C, L]")
        for name in ("y", "snr", "split"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise InputFileError(f"dataset {name} has shape {arr.shape}; expected ({n},) to match x")
        if n and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise InputFileError(
                f"dataset labels span {self.y.min()}..{self.y.max()} but only "
                f"{len(self.class_names)} class names are given"
            )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch axis."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def take(self, indices: np.ndarray) -> ArrayDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(
            x=self.x[indices],
            y=self.y[indices],
            class_names=list(self.class_names),
            snr=None if self.snr is None else self.snr[indices],
            split=None if self.split is None else self.split[indices],
        )

    def split_indices(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}", hint=f"use one of {', '.join(SPLITS)}")
        if self.split is None:
            raise InputFileError(f"dataset has no split labels; cannot take the {name!r} split")
        return np.flatnonzero(self.split == SPLITS.index(name))

    def subset(self, name: str) -> ArrayDataset:
        """The frames of one split ('train', 'val' or 'test')."""
        return self.take(self.split_indices(name))

    def save_npz(
        self,
        path: str | os.PathLike[str],
        *,
        config: dict[str, Any] | None = None,
        parents: list[str | os.PathLike[str]] | None = None,
    ) -> None:
        """Write the dataset atomically, with its manifest beside it."""
        arrays: dict[str, np.ndarray] = {
            "x": self.x,
            "y": self.y,
            "class_names": np.asarray(self.class_names, dtype=np.str_),
        }
        if self.snr is not None:
            arrays["snr"] = self.snr
        if self.split is not None:
            arrays["split"] = self.split
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        metrics = {"frames": len(self), "input_shape": list(self.input_shape), "classes": self.class_names}
        write_manifest(path, "dataset", config=config, parents=parents, metrics=metrics)


def load_npz(path: str | os.PathLike[str]) -> ArrayDataset:
    """Read a dataset written by :meth:`ArrayDataset.save_npz` (or by hand with the same keys).

    Required keys: ``x`` [N, ...] and ``y`` [N]; optional ``class_names``, ``snr``, ``split``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"dataset {path} does not exist", hint="check the path or run the data stage")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(f"dataset {path} is not a readable npz file: {exc}") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise InputFileError(
            f"dataset {path} lacks array(s) {', '.join(missing)}",
            hint="an edgekd dataset npz holds x [N, C, L] and y [N] (and optionally class_names, snr, split)",
        )
    y = arrays["y"]
    if "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"].tolist()]
    else:
        class_names = [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    return ArrayDataset(
        x=arrays["x"],
        y=y,
        class_names=class_names,
        snr=arrays.get("snr"),
        split=arrays.get("split"),
    )
