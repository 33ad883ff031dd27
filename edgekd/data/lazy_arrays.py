"""Large labelled arrays read through a memory map: an uncompressed npz or a folder of .npy files.

Two layouts hold the keys of an edgekd dataset npz (``x``, ``y``, and optionally
``class_names``, ``snr``, ``split``, ``group``; see :mod:`edgekd.data.dataset`):

* an ``.npz`` written by ``np.savez`` (as :meth:`ArrayDataset.save_npz` writes it). Its
  members are stored uncompressed in the zip, so ``x`` is memory-mapped at its offset in the
  file (``np.load(mmap_mode="r")`` ignores ``mmap_mode`` for npz files; this reads the zip's
  local header instead). A member written by ``np.savez_compressed`` cannot be mapped: it is
  refused with :class:`CompressedArrayError` (:func:`edgekd.data.storage.open_map_dataset`
  then reads the file into memory when it fits);
* a folder with ``x.npy``, ``y.npy`` and optionally ``class_names.npy``, ``snr.npy``,
  ``split.npy``, each an ordinary ``.npy`` (``np.save``).

``x`` is [N, C, L] or [N, C, H, W] of any real dtype (float16 or int8 frames stay that small
on disk and become float32 as they are read). The labels, SNRs, splits and class names are
read and checked when the dataset is opened (:func:`edgekd.data.validate.validate_labels`);
each frame is checked for NaN/Inf as it is read. The memory map is opened in each process
that reads, never pickled.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import (
    _UNREADABLE,
    NPZ_HINT,
    NPZ_KEYS,
    _read_member,
    class_names_near_miss,
    drawn_split,
    missing_arrays_note,
    npy_header,
)
from edgekd.data.mapstyle import Augment, MapDataset
from edgekd.data.validate import check_finite, check_frame_layout, validate_labels
from edgekd.errors import InputFileError

ZIP_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader: 30 bytes
ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
FOLDER_HINT = (
    "a dataset folder holds x.npy [N, C, L] and y.npy [N]; split.npy (or group.npy) too for distill "
    "and run; class_names.npy and snr.npy optionally"
)


class CompressedArrayError(InputFileError):
    """An npz member stored compressed: readable whole, but not by memory map."""


@dataclasses.dataclass(frozen=True)
class MappedArray:
    """Where an array's data lies in a file: enough to memory-map it in any process."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool

    def open(self) -> np.memmap:
        order = "F" if self.fortran else "C"
        return np.memmap(
            self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape, order=order
        )

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _layout(handle: Any, path: Path, key: str, where: str, start: int, stored: int) -> MappedArray:
    """The .npy member that begins at ``start`` of ``handle`` and spans ``stored`` bytes."""
    shape, fortran, dtype = npy_header(handle, key, where)
    offset = handle.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        raise InputFileError(f"{where}: array {key!r} holds {dtype}, not real numbers", hint=NPZ_HINT)
    located = MappedArray(path, offset, shape, dtype, fortran)
    if located.nbytes > stored - (offset - start):
        raise InputFileError(
            f"{where}: array {key!r} declares shape {list(shape)} ({located.nbytes} bytes) "
            f"but holds {stored - (offset - start)} bytes",
            hint="the file is truncated or corrupt; write it again",
        )
    return located


def locate_npz_member(path: Path, key: str, where: str) -> MappedArray | None:
    """Where member ``key`` of the npz at ``path`` keeps its data; None when there is no such
    member. CompressedArrayError when it is stored compressed."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = next((i for i in archive.infolist() if i.filename == f"{key}.npy"), None)
        if info is None:
            return None
        if info.flag_bits & 0x1:
            raise InputFileError(f"{where}: array {key!r} is encrypted", hint=NPZ_HINT)
        if info.compress_type != zipfile.ZIP_STORED:
            raise CompressedArrayError(
                f"{where}: array {key!r} is compressed, so it cannot be memory-mapped",
                hint="write it with np.savez (not savez_compressed) or as a folder of .npy files",
            )
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            fields = ZIP_LOCAL_HEADER.unpack(handle.read(ZIP_LOCAL_HEADER.size))
            if fields[0] != ZIP_LOCAL_SIGNATURE:
                raise InputFileError(f"{where}: array {key!r} has a damaged zip header", hint=NPZ_HINT)
            start = info.header_offset + ZIP_LOCAL_HEADER.size + fields[10] + fields[11]
            handle.seek(start)
            return _layout(handle, path, key, where, start, info.file_size)
    except (*_UNREADABLE, struct.error) as exc:
        raise InputFileError(f"{where} is not a readable npz file: {exc}", hint=NPZ_HINT) from None


def _npz_labels(path: Path, where: str) -> dict[str, np.ndarray]:
    """The small arrays of the npz (every key but ``x``), read and header-checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
            return {
                key: _read_member(archive, members[key], key, where)
                for key in NPZ_KEYS
                if key != "x" and key in members
            }
    except _UNREADABLE as exc:
        raise InputFileError(f"{where} is not a readable npz file: {exc}", hint=NPZ_HINT) from None


def _npy_file(path: Path, key: str, where: str) -> Any:
    """One small array of a dataset folder, header-checked (never a pickle)."""
    try:
        with open(path, "rb") as handle:
            shape, _, dtype = npy_header(handle, key, where)
            if dtype.hasobject or dtype.fields is not None:
                raise InputFileError(f"{where}: {path.name} holds {dtype}", hint=FOLDER_HINT)
            stored = path.stat().st_size - handle.tell()
            if math.prod(shape) * dtype.itemsize > stored:
                raise InputFileError(f"{where}: {path.name} is truncated", hint="write it again")
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
    except _UNREADABLE as exc:
        raise InputFileError(
            f"{where}: {path.name} is not a readable .npy file: {exc}", hint=FOLDER_HINT
        ) from None


def _open_folder(folder: Path, where: str) -> tuple[MappedArray, dict[str, np.ndarray]]:
    for key in ("x", "y"):
        if not (folder / f"{key}.npy").is_file():
            note = missing_arrays_note(folder, [key])
            raise InputFileError(f"{where} lacks {key}.npy{note}", hint=FOLDER_HINT)
    x_path = folder / "x.npy"
    try:
        with open(x_path, "rb") as handle:
            x = _layout(handle, x_path, "x", where, 0, x_path.stat().st_size)
    except _UNREADABLE as exc:
        raise InputFileError(f"{where}: x.npy is not a readable .npy file: {exc}", hint=FOLDER_HINT) from None
    meta = {
        key: _npy_file(folder / f"{key}.npy", key, where)
        for key in NPZ_KEYS
        if key != "x" and (folder / f"{key}.npy").is_file()
    }
    return x, meta


def _open_npz(path: Path, where: str) -> tuple[MappedArray, dict[str, np.ndarray]]:
    if not zipfile.is_zipfile(path):
        raise InputFileError(
            f"{where} is not an npz file (a zip of .npy arrays) or is truncated", hint=NPZ_HINT
        )
    x = locate_npz_member(path, "x", where)
    meta = _npz_labels(path, where)
    if x is None or "y" not in meta:
        missing = [k for k, v in (("x", x), ("y", meta.get("y"))) if v is None]
        note = missing_arrays_note(path, missing)
        raise InputFileError(f"{where} lacks array(s) {', '.join(missing)}{note}", hint=NPZ_HINT)
    return x, meta


def locate_frames(path: str | os.PathLike[str]) -> MappedArray:
    """Where ``x`` lies in an npz or dataset folder (reads headers only): its shape and dtype
    tell how large the frames are before anything is read."""
    path = Path(path)
    where = f"dataset {path}"
    if path.is_dir():
        return _open_folder(path, where)[0]
    x = locate_npz_member(path, "x", where) if zipfile.is_zipfile(path) else None
    if x is None:
        raise InputFileError(f"{where} holds no array x", hint=NPZ_HINT)
    return x


class ArrayFileDataset(MapDataset):
    """The frames of an uncompressed npz or a dataset folder, memory-mapped (see the module doc).

    ``dataset[i]`` is (float32 tensor [C, ...], class id). Opening reads the headers and the
    labels; a frame is read (and checked for NaN/Inf) when it is asked for.

    Raises InputFileError naming the file for a missing, malformed or truncated array, and
    CompressedArrayError for an npz whose ``x`` is compressed.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, augment: Augment | None = None, augment_seed: int = 0
    ) -> None:
        self.path = Path(path)
        self._where = f"dataset {self.path}"
        if self.path.is_dir():
            located, meta = _open_folder(self.path, self._where)
        elif self.path.is_file():
            located, meta = _open_npz(self.path, self._where)
        else:
            raise InputFileError(f"{self._where} does not exist", hint="check the path or run the data stage")
        self._located = located
        self._x: Any = None
        self._pid = -1
        x = self._frames()
        check_frame_layout(x, self._where)
        y, names, snr, split = validate_labels(
            len(x),
            meta["y"],
            where=self._where,
            class_names=meta.get("class_names"),
            snr=meta.get("snr"),
            split=meta.get("split"),
            names_near_miss=None if "class_names" in meta else class_names_near_miss(self.path),
        )
        if split is None:  # drawn by group as the in-memory reader draws it: one split per file
            split = drawn_split(meta.get("group"), y, snr, self._where)
        super().__init__(
            rows=np.arange(len(x)),
            y=y,
            class_names=names,
            input_shape=tuple(x.shape[1:]),
            snr=snr,
            split=split,
            source=self._where,
            augment=augment,
            augment_seed=augment_seed,
        )

    def _frames(self) -> np.memmap:
        if self._x is None or self._pid != os.getpid():
            try:
                self._x = self._located.open()
            except (OSError, ValueError) as exc:
                raise InputFileError(f"{self._where}: x cannot be mapped: {exc}", hint=NPZ_HINT) from None
            self._pid = os.getpid()
        return self._x

    def _read(self, rows: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32: inf, refused below
            out = np.array(self._frames()[rows], dtype=np.float32)
        check_finite(out, f"{self._where}: x", rows=rows)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_x"], state["_pid"] = None, -1  # a memory map is reopened, never pickled whole
        return state
