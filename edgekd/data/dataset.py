"""In-memory labelled arrays with per-frame metadata, and their npz file format.

A dataset is ``x`` float32 [N, C, L] (for IQ frames C=2: I and Q), integer class
labels ``y`` [N], the class names, an optional SNR label in dB per frame, and a
split code per frame (0 train, 1 val, 2 test). The npz file holds plain arrays only: each
member's header (dtype, declared shape) is checked before its data is read, pickled objects
are never loaded, and the arrays go through :func:`edgekd.data.validate.validate_arrays`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_path, write_manifest
from edgekd.data.splits import assign_group_splits, assign_splits
from edgekd.data.validate import SPLIT_NAMES, check_memory, group_keys, validate_arrays
from edgekd.errors import ConfigError, InputFileError, ShapeError

SPLITS = SPLIT_NAMES
NPZ_KEYS = ("x", "y", "class_names", "snr", "split", "group")
NPZ_HINT = (
    "an edgekd dataset npz holds x [N, C, L] and y [N]; split [N] (0 train, 1 val, 2 test) too for "
    "distill and run (or group [N] to have it drawn by group); class_names [K] (else '0'..'K-1') "
    "and snr [N] optionally"
)
# The split drawn for a file that has a group array and no split array: a fixed rule, so that
# every command that opens the file (data stage, distill, bench...) sees the same split.
GROUP_SPLIT = {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
# Names other tools give the arrays of NPZ_KEYS (RadioML's X/Y/Z, scikit-learn's data/target...),
# so a refusal can say which array to rename. Checked case-insensitively, after an exact
# case-insensitive match and before a spelling match.
NEAR_MISSES = {
    "x": ("data", "frames", "inputs", "input", "samples", "signals", "iq", "x_train", "features", "images"),
    "y": ("labels", "label", "targets", "target", "y_train", "classes", "class_ids", "lbl"),
    "class_names": ("classes", "names", "labels", "label_names", "target_names", "mods", "modulations"),
    "snr": ("snrs", "z"),
    "split": ("splits", "fold", "subset", "partition"),
}
# What a damaged zip or .npy member raises from zipfile, zlib or numpy's header parser.
_UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


class SplitsMixin:
    """``split_indices`` and ``subset`` for a dataset with ``split`` (int8 [N] codes or None),
    ``source`` (a name for messages, or None) and ``take(indices)``: in memory or map-style."""

    split: np.ndarray | None
    source: str | None

    def take(self, indices: np.ndarray) -> Any:  # pragma: no cover - every dataset defines it
        raise NotImplementedError

    def split_indices(self, name: str) -> np.ndarray:
        """Indices int64 of the frames of split ``name`` ('train', 'val' or 'test')."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}", hint=f"use one of {', '.join(SPLITS)}")
        if self.split is None:
            raise InputFileError(
                f"{self.source or 'dataset'} has no split labels; cannot take the {name!r} split"
            )
        return np.flatnonzero(self.split == SPLITS.index(name))

    def subset(self, name: str) -> Any:
        """The frames of one split, as a dataset of the same kind; an empty split is an
        InputFileError naming the source."""
        indices = self.split_indices(name)
        if len(indices) == 0 and len(self):  # type: ignore[arg-type]
            raise InputFileError(
                f"{self.source or 'the dataset'}: the {name!r} split is empty",
                hint=f"give some frames split code {SPLITS.index(name)} ({name})",
            )
        return self.take(indices)


@dataclasses.dataclass
class ArrayDataset(SplitsMixin):
    x: np.ndarray  # float32 [N, C, L]
    y: np.ndarray  # int64 [N]
    class_names: list[str]
    snr: np.ndarray | None = None  # int16 [N], dB
    split: np.ndarray | None = None  # int8 [N], index into SPLITS
    # What the frames came from ("dataset runs/kd/data.npz"), for messages; None when built in memory.
    source: str | None = dataclasses.field(default=None, repr=False, compare=False)

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
            source=self.source,
        )

    def save_npz(
        self,
        path: str | os.PathLike[str],
        *,
        config: dict[str, Any] | None = None,
        parents: list[str | os.PathLike[str]] | None = None,
    ) -> None:
        """Write the dataset atomically, with its manifest beside it.

        What :func:`load_npz` would refuse (NaN, empty, labels outside the class names...) is
        refused here, before anything is written.
        """
        validate_arrays(
            self.x,
            self.y,
            where=f"dataset {path}",
            class_names=self.class_names,
            snr=self.snr,
            split=self.split,
        )
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


def npy_header(handle: Any, key: str, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a .npy member's header, without reading its data;
    ``handle`` is left at the first byte of the data."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:  # 3.0 exists only for structured dtypes with non-Latin-1 field names
        raise InputFileError(f"{where}: array {key!r} uses .npy format {version}", hint=NPZ_HINT)
    return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, where: str) -> np.ndarray:
    """One array of the npz, after checking that its header is plain data of a size the file holds."""
    with archive.open(info) as handle:
        shape, _, dtype = npy_header(handle, key, where)
        stored = info.file_size - handle.tell()
    if dtype.hasobject or dtype.fields is not None:
        raise InputFileError(
            f"{where}: array {key!r} holds {'Python objects' if dtype.hasobject else 'records'} ({dtype})",
            hint=f"edgekd reads plain numeric arrays only (never pickles); {NPZ_HINT}",
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > stored:
        raise InputFileError(
            f"{where}: array {key!r} declares shape {list(shape)} ({declared} bytes) "
            f"but holds {stored} bytes",
            hint="the file is truncated or corrupt; write it again",
        )
    check_memory(declared, f"{where}: array {key!r}", "use a smaller subset of the data")
    with archive.open(info) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def read_npz_arrays(path: Path, where: str) -> dict[str, np.ndarray]:
    """The arrays of :data:`NPZ_KEYS` that the npz holds (other members are never read)."""
    if not zipfile.is_zipfile(path):
        raise InputFileError(
            f"{where} is not an npz file (a zip of .npy arrays) or is truncated", hint=NPZ_HINT
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
            return {
                key: _read_member(archive, members[key], key, where) for key in NPZ_KEYS if key in members
            }
    except MemoryError:
        raise InputFileError(
            f"{where} does not fit in memory", hint="use a smaller subset of the data"
        ) from None
    except _UNREADABLE as exc:
        raise InputFileError(f"{where} is not a readable npz file: {exc}", hint=NPZ_HINT) from None


Header = tuple[tuple[int, ...], np.dtype]


def _header(handle: Any) -> Header | None:
    """(shape, dtype) of the .npy data at ``handle``, None when its header does not read."""
    try:
        shape, _, dtype = npy_header(handle, "", "")
    except (*_UNREADABLE, InputFileError):
        return None
    return shape, dtype


def _member_headers(path: Path) -> dict[str, Header | None]:
    """Name -> (shape, dtype) of every .npy array of an npz (or of a folder of .npy files), from
    the headers alone; None for a member whose header does not read."""
    out: dict[str, Header | None] = {}
    try:
        if path.is_dir():
            for file in sorted(path.glob("*.npy")):
                with open(file, "rb") as handle:
                    out[file.stem] = _header(handle)
            return out
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as handle:
                        out[info.filename[:-4]] = _header(handle)
    except _UNREADABLE:
        pass  # the names read so far still help the message
    return out


def _fits(key: str, header: Header | None) -> bool:
    """Whether an array of this header could be the NPZ_KEYS array ``key`` (unknown: yes)."""
    if header is None:
        return True
    shape, dtype = header
    if key == "class_names":
        return dtype.kind in "US" and len(shape) == 1
    numeric = dtype.kind in "biuf" and dtype.fields is None
    ndims = {"x": (3, 4), "y": (1, 2), "snr": (1, 2), "split": (1,)}[key]
    return numeric and len(shape) in ndims


def near_miss(key: str, headers: dict[str, Header | None]) -> str | None:
    """The array of ``headers`` most likely meant as NPZ_KEYS array ``key``: the same name in
    another case ('X'), a name other tools use ('labels', 'data'), or a close spelling; only
    arrays of a fitting kind and rank (class names are strings, frames [N, C, ...])."""
    free = [name for name in headers if name not in NPZ_KEYS and _fits(key, headers[name])]
    lowered = {name.lower(): name for name in free}
    if key in lowered:
        return lowered[key]
    for alias in NEAR_MISSES[key]:
        if alias in lowered:
            return lowered[alias]
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def class_names_near_miss(path: Path) -> str | None:
    """The array of an npz or .npy folder without ``class_names`` that looks like them
    ('classes', 'mods', ...: 1-D strings), for the warning that names the classes by number."""
    return near_miss("class_names", _member_headers(path))


def missing_arrays_note(path: Path, missing: list[str]) -> str:
    """What to add to a "lacks array(s)" line: the arrays the file does hold, and which to
    rename (``"; it holds 'X', 'classes': rename 'X' to 'x'"``); reads headers only."""
    headers = _member_headers(path)
    if not headers:
        return "; it holds no .npy arrays"
    names = sorted(headers)
    shown = ", ".join(repr(n) for n in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    renames = [(near_miss(key, headers), key) for key in missing]
    fixes = ", ".join(f"{old!r} to {new!r}" for old, new in renames if old is not None)
    return f"; it holds {shown}" + (f": rename {fixes}" if fixes else "")


def drawn_split(
    group: Any,
    y: np.ndarray,
    snr: np.ndarray | None,
    where: str,
    *,
    test_fraction: float = GROUP_SPLIT["test_fraction"],
    draw_missing: bool = False,
) -> np.ndarray | None:
    """The split of a file without a split array: by its ``group`` array (frames of one group
    in one split, :func:`edgekd.data.splits.assign_group_splits`, :data:`GROUP_SPLIT`), else,
    with ``draw_missing``, per (class, SNR) cell; else None (no split)."""
    val, seed = GROUP_SPLIT["val_fraction"], GROUP_SPLIT["seed"]
    if group is not None:
        keys = group_keys(group, len(y), where)
        return assign_group_splits(keys, y, snr, val, test_fraction, seed)
    return assign_splits(y, snr, val, test_fraction, seed) if draw_missing else None


def load_npz(
    path: str | os.PathLike[str],
    *,
    test_fraction: float = GROUP_SPLIT["test_fraction"],
    draw_missing: bool = False,
) -> ArrayDataset:
    """Read and check a dataset written by :meth:`ArrayDataset.save_npz` (or by hand with the same keys).

    Required keys: ``x`` [N, C, L] or [N, C, H, W] and ``y`` [N] (class ids; one-hot [N, K] is
    accepted); optional ``class_names`` [K] (without it the classes are named '0'..'K-1', with
    one warning line), ``snr`` [N] (dB), ``split`` [N] (0/1/2: training needs it, see
    :func:`edgekd.data.validate.check_splits`; a file without it is scored whole), ``group`` [N]
    (ints or strings: without ``split``, the split is drawn by group, :func:`drawn_split`).
    ``test_fraction`` and ``draw_missing`` as in :func:`drawn_split` (a main file beside a
    separate test file: train and val only, drawn even without a group).
    Raises InputFileError naming the file and the array for anything
    :func:`edgekd.data.validate.validate_arrays` refuses; a missing ``x`` or ``y`` names the
    arrays the file holds and the one to rename (``'X'`` to ``'x'``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"dataset {path} does not exist", hint="check the path or run the data stage")
    where = f"dataset {path}"
    arrays = read_npz_arrays(path, where)
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        note = missing_arrays_note(path, missing)
        raise InputFileError(f"{where} lacks array(s) {', '.join(missing)}{note}", hint=NPZ_HINT)
    names_near_miss = None if "class_names" in arrays else class_names_near_miss(path)
    dataset = validate_arrays(
        arrays["x"],
        arrays["y"],
        where=where,
        class_names=arrays.get("class_names"),
        snr=arrays.get("snr"),
        split=arrays.get("split"),
        names_near_miss=names_near_miss,
    )
    if dataset.split is None:
        drawn = drawn_split(
            arrays.get("group"),
            dataset.y,
            dataset.snr,
            where,
            test_fraction=test_fraction,
            draw_missing=draw_missing,
        )
        dataset.split = None if drawn is None else drawn.astype(np.int8)
    return dataset


def join_test_file(main: ArrayDataset, test: ArrayDataset, where: str, test_where: str) -> ArrayDataset:
    """``main``'s train and val frames and every frame of ``test`` as the test split.

    The test file's labels are mapped by class name onto ``main``'s label order (its classes
    must be among ``main``'s); frame shapes must match, and both or neither carry SNR labels.
    ``main`` may hold no test frames of its own (split code 2).
    """
    if main.split is not None and (main.split == SPLITS.index("test")).any():
        count = int((main.split == SPLITS.index("test")).sum())
        raise ConfigError(
            f"{where} holds {count} test frames of its own (split 2) and data.test_path gives the test split",
            hint="give those frames split 0 or 1 (or remove the test folder), or remove data.test_path",
        )
    if test.input_shape != main.input_shape:
        raise ShapeError(
            f"{test_where} (data.test_path) holds frames of shape {list(test.input_shape)} but "
            f"{where} holds {list(main.input_shape)}",
            hint="data.test_path takes a file of the same source and frame shape as data.path",
        )
    foreign = [name for name in test.class_names if name not in main.class_names]
    if foreign:
        raise InputFileError(
            f"{test_where} (data.test_path) holds class {foreign[0]!r}, which {where} lacks "
            f"(its classes: {', '.join(main.class_names)})",
            hint="the test file's class_names must be among the training file's",
        )
    if (main.snr is None) != (test.snr is None):
        has, lacks = (where, test_where) if test.snr is None else (test_where, where)
        raise InputFileError(
            f"{has} has SNR labels but {lacks} has none",
            hint="give both files an snr array, or neither",
        )
    check_memory(main.x.nbytes + test.x.nbytes, f"{where} with its test file", "use smaller files")
    label_of = np.asarray([main.class_names.index(name) for name in test.class_names], dtype=np.int64)
    return ArrayDataset(
        x=np.concatenate([main.x, test.x]),
        y=np.concatenate([main.y, label_of[test.y]]),
        class_names=list(main.class_names),
        snr=None if main.snr is None else np.concatenate([main.snr, test.snr]),
        split=None
        if main.split is None
        else np.concatenate([main.split, np.full(len(test), SPLITS.index("test"), dtype=np.int8)]),
        source=where,
    )
