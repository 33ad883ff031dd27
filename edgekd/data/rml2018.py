"""RadioML 2018.01A (HDF5), streamed with h5py: the 21 GB file is never read whole.

The file holds three datasets of N = 2,555,904 frames:

* ``X`` float32 [N, 1024, 2] — IQ samples, time first;
* ``Y`` one-hot [N, 24] — the class (int or float);
* ``Z`` [N, 1] — the SNR label in dB (-20..+30 step 2).

:class:`RML2018Frames` reads frames by index (in increasing order, chunk by chunk, as HDF5
wants) and returns them as float32 [n, 2, L] like every edgekd dataset.
:func:`materialize_rml2018` picks a subset (SNRs, classes, frames per (class, SNR) cell,
:func:`label_subset`) and reads only those frames into an :class:`ArrayDataset`;
``edgekd.data.lazy_rml2018.RML2018Dataset`` picks the same subset and reads frames on access.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekd.artifacts import require_file
from edgekd.data.dataset import ArrayDataset
from edgekd.data.splits import assign_splits, rank_within_strata
from edgekd.data.validate import check_finite, check_kind, check_memory, labels_from_onehot, snr_labels
from edgekd.errors import ConfigError, InputFileError
from edgekd.optional import require_module
from edgekd.registry import suggestion

# Label order of the one-hot Y in the published file. The ``classes.txt`` shipped with it is
# known to list them in another order; this is the order the labels actually follow.
RML2018_CLASSES = (
    "OOK",
    "4ASK",
    "8ASK",
    "BPSK",
    "QPSK",
    "8PSK",
    "16PSK",
    "32PSK",
    "16APSK",
    "32APSK",
    "64APSK",
    "128APSK",
    "16QAM",
    "32QAM",
    "64QAM",
    "128QAM",
    "256QAM",
    "AM-SSB-WC",
    "AM-SSB-SC",
    "AM-DSB-WC",
    "AM-DSB-SC",
    "FM",
    "GMSK",
    "OQPSK",
)
# Rows read per h5py call: 4096 frames of 1024x2 float32 = 32 MiB.
DEFAULT_CHUNK = 4096
# Rows apart that a read still spans with one slice (8 frames of 1024x2 float32: 64 KiB).
MAX_GAP = 8
LAYOUT_HINT = "expected X float32 [N, 1024, 2], Y one-hot [N, 24], Z SNR [N, 1]"
# What h5py raises when a truncated or corrupt file is read (opening it may still succeed).
_H5_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError)


def _h5py() -> Any:
    return require_module("h5py", "reading RadioML 2018 HDF5 files")  # only RadioML 2018 needs it


class RML2018Frames:
    """Random access to the frames of a RadioML 2018 HDF5 file, without loading it.

    Labels (``y`` int64 [N], ``snr`` int16 [N]) are read once, chunk by chunk (Y alone is
    ~250 MB as float32 one-hot; only its argmax is kept). Frames are read on demand.
    The file is opened lazily and reopened in a new process, so the object can be handed to
    DataLoader workers.

    Args:
        path: the ``.hdf5`` file.
        class_names: names of the one-hot columns, default :data:`RML2018_CLASSES`.
        chunk: rows per read.

    >>> frames = RML2018Frames("GOLD_XYZ_OSC.0001_1024.hdf5")
    >>> x, y, snr = frames[np.array([5, 3])]   # x float32 [2, 2, 1024]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        class_names: list[str] | tuple[str, ...] | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.path = require_file(path, "RadioML 2018 file", hint="check data.path")
        if chunk <= 0:
            raise ConfigError(f"chunk must be positive, got {chunk}")
        self.chunk = int(chunk)
        self._file: Any = None
        self._pid = -1
        try:
            with self._corrupt_file_errors():
                self._read_header(class_names)
        except BaseException:
            self.close()  # a refused file is not left open
            raise

    def _read_header(self, class_names: list[str] | tuple[str, ...] | None) -> None:
        """Check the layout and read the labels: ``class_names``, ``frame_length``, ``y``, ``snr``."""
        x, y, z = self._datasets()
        self._check_layout(x, y, z)
        names = list(class_names) if class_names is not None else list(RML2018_CLASSES)
        if len(names) != y.shape[1]:
            raise ConfigError(
                f"RadioML 2018 file {self.path} has {y.shape[1]} classes but {len(names)} class names",
                hint="give one name per one-hot column of Y",
            )
        self.class_names = [str(c) for c in names]
        self.frame_length = int(x.shape[1])
        self.chunk_rows = int(x.chunks[0]) if x.chunks else 1  # rows per HDF5 chunk; 1: contiguous
        self.y, self.snr = self._read_labels(y, z)

    @contextlib.contextmanager
    def _corrupt_file_errors(self) -> Iterator[None]:
        """What h5py raises while it walks a damaged file (a link lookup, an object header, a
        dataset's metadata: any access, not only the open) becomes an InputFileError naming it."""
        try:
            yield
        except _H5_ERRORS as exc:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise InputFileError(
                f"RadioML 2018 file {self.path} is corrupt: {detail}",
                hint="the file is truncated or damaged; download it again",
            ) from None

    def _datasets(self) -> tuple[Any, Any, Any]:
        if self._file is None or self._pid != os.getpid():
            h5py = _h5py()
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise InputFileError(
                    f"RadioML 2018 file {self.path} is not a readable HDF5 file: {exc}"
                ) from None
            self._pid = os.getpid()
        missing = [key for key in ("X", "Y", "Z") if key not in self._file]
        if missing:
            raise InputFileError(
                f"RadioML 2018 file {self.path} lacks dataset(s) {', '.join(missing)}", hint=LAYOUT_HINT
            )
        return self._dataset("X"), self._dataset("Y"), self._dataset("Z")

    def _dataset(self, key: str) -> Any:
        """``X``, ``Y`` or ``Z``: a dataset stored in this file (no link or mapping to another file)."""
        h5py = _h5py()
        where = f"RadioML 2018 file {self.path}: {key}"
        if not isinstance(self._file.get(key, getlink=True), h5py.HardLink):
            raise InputFileError(
                f"{where} is a link, not a dataset stored here",
                hint="edgekd reads data stored in the file only",
            )
        node = self._file.get(key)
        if not isinstance(node, h5py.Dataset):
            raise InputFileError(f"{where} is not a dataset ({type(node).__name__})", hint=LAYOUT_HINT)
        if node.is_virtual or node.external:
            raise InputFileError(
                f"{where} maps data from other files", hint="edgekd reads data stored in the file only"
            )
        return node

    def _check_layout(self, x: Any, y: Any, z: Any) -> None:
        """Check the shapes, dtypes and sizes of X, Y, Z (no data is read)."""
        where = f"RadioML 2018 file {self.path}"
        if x.ndim != 3 or x.shape[2] != 2:
            hint = "X looks transposed: store [N, L, 2]" if x.ndim == 3 and x.shape[1] == 2 else LAYOUT_HINT
            raise InputFileError(f"{where}: X has shape {list(x.shape)}; expected [N, L, 2]", hint=hint)
        n = int(x.shape[0])
        if n == 0 or x.shape[1] == 0:
            raise InputFileError(f"{where}: X holds no frames (shape {list(x.shape)})", hint=LAYOUT_HINT)
        if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 2:
            raise InputFileError(
                f"{where}: Y has shape {list(y.shape)}; expected [{n}, K] one-hot", hint=LAYOUT_HINT
            )
        if z.ndim not in (1, 2) or z.shape[0] != n or z.size != n:
            raise InputFileError(f"{where}: Z has shape {list(z.shape)}; expected [{n}, 1]", hint=LAYOUT_HINT)
        for key, node, kinds in (("X", x, "fiu"), ("Y", y, "biuf"), ("Z", z, "fiu")):
            check_kind(node, f"{where}: {key}", kinds, LAYOUT_HINT)
        if x.id.get_storage_size() == 0:
            raise InputFileError(
                f"{where}: X declares {n} frames but stores no data", hint="the file is incomplete"
            )
        # Labels are kept in memory (int64 + int16 per frame); a forged N must not exhaust it.
        check_memory(n * 10, f"{where}: the labels of its {n} frames", "use a smaller file")

    def _rows(self, node: Any, key: str, selection: Any, start: int) -> np.ndarray:
        """``node[selection]`` as an array; a read error is an InputFileError naming the rows."""
        try:
            return np.asarray(node[selection])
        except _H5_ERRORS as exc:
            raise InputFileError(
                f"RadioML 2018 file {self.path}: {key} cannot be read from row {start}: {exc}",
                hint="the file is truncated or corrupt; download it again",
            ) from None

    def _read_labels(self, y_ds: Any, z_ds: Any) -> tuple[np.ndarray, np.ndarray]:
        where = f"RadioML 2018 file {self.path}"
        n = y_ds.shape[0]
        y = np.empty(n, dtype=np.int64)
        for start in range(0, n, self.chunk):
            block = self._rows(y_ds, "Y", slice(start, start + self.chunk), start)
            y[start : start + len(block)] = labels_from_onehot(block, f"{where}: Y", start)
        z = self._rows(z_ds, "Z", slice(None), 0)  # N small ints: fine to hold
        return y, snr_labels(z, n, where, name="Z")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (2, self.frame_length)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames float32 [n, 2, L] at ``indices`` (any order, repeats allowed).

        Every frame read is checked: NaN or Inf is an InputFileError naming the row of X.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"frame index out of range 0..{len(self) - 1}")
        with self._corrupt_file_errors():
            x_ds = self._datasets()[0]
        unique, inverse = np.unique(indices, return_inverse=True)  # HDF5 wants increasing indices
        out = np.empty((len(unique), 2, self.frame_length), dtype=np.float32)
        for start in range(0, len(unique), self.chunk):
            part = unique[start : start + self.chunk]
            block = self._read_part(x_ds, part)
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused below
                out[start : start + len(part)] = np.transpose(block, (0, 2, 1))
            check_finite(out[start : start + len(part)], f"RadioML 2018 file {self.path}: X", rows=part)
        return out[inverse.reshape(-1)]

    def _read_part(self, x_ds: Any, part: np.ndarray) -> np.ndarray:
        """Rows ``part`` (increasing) of X. Rows close together (gaps of at most :data:`MAX_GAP`)
        are read as one slice and picked from it, when that reads at most twice the rows asked
        for (a chunk-aware sampler's batch, a split of it); scattered rows in one read."""
        first, last = int(part[0]), int(part[-1])
        if last - first + 1 == len(part):  # contiguous: one slice read
            return self._rows(x_ds, "X", slice(first, last + 1), first)
        groups = np.split(part, np.flatnonzero(np.diff(part) > MAX_GAP) + 1)
        if sum(int(g[-1] - g[0]) + 1 for g in groups) > 2 * len(part):
            return self._rows(x_ds, "X", part, first)
        blocks = []
        for g in groups:
            block = self._rows(x_ds, "X", slice(int(g[0]), int(g[-1]) + 1), int(g[0]))
            blocks.append(block if len(block) == len(g) else block[g - g[0]])
        return np.concatenate(blocks)

    def __getitem__(self, index: int | np.ndarray) -> tuple[np.ndarray, np.ndarray | int, np.ndarray | int]:
        """``(x, y, snr)``: one frame float32 [2, L] or a batch [n, 2, L] with its labels."""
        if np.isscalar(index):
            i = int(index)  # type: ignore[arg-type]
            i = i + len(self) if i < 0 else i
            return self.read(np.array([i]))[0], int(self.y[i]), int(self.snr[i])
        idx = np.asarray(index, dtype=np.int64)
        return self.read(idx), self.y[idx], self.snr[idx]

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(*_H5_ERRORS):  # closing a damaged file must not hide why it was refused
                self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1  # h5py handles do not cross processes
        return state


def select_frames(
    frames: RML2018Frames,
    *,
    classes: list[str] | None = None,
    snrs: list[int] | None = None,
    max_frames_per_cell: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices (int64, ascending) of the frames of the chosen classes and SNRs.

    ``max_frames_per_cell`` keeps at most that many frames of each (class, SNR) cell, drawn
    at random with ``seed``.
    """
    keep = np.ones(len(frames), dtype=bool)
    if classes:
        for name in classes:
            if name not in frames.class_names:
                raise ConfigError(
                    f"class {name!r} is not in RadioML 2018 file {frames.path}",
                    hint=suggestion(name, frames.class_names, "classes"),
                )
        keep &= np.isin(frames.y, [frames.class_names.index(c) for c in classes])
    if snrs:
        keep &= np.isin(frames.snr, np.asarray(snrs, dtype=np.int16))
    chosen = np.flatnonzero(keep)
    if max_frames_per_cell is not None:
        if max_frames_per_cell <= 0:
            raise ConfigError(f"max_frames_per_cell must be positive, got {max_frames_per_cell}")
        cell = frames.y[chosen] * 1000 + frames.snr[chosen]  # SNRs span far less than 1000 dB
        rank, _ = rank_within_strata(cell, np.random.default_rng(seed))
        chosen = chosen[rank < max_frames_per_cell]
    return chosen.astype(np.int64)


@dataclasses.dataclass
class LabelledSubset:
    """The frames a recipe chose from a file: their rows of X (int64 [n], ascending), labels
    (int64 [n], indices into ``class_names``), SNR (int16 [n], dB) and split codes (int8 [n])."""

    rows: np.ndarray
    y: np.ndarray
    class_names: list[str]
    snr: np.ndarray
    split: np.ndarray


@dataclasses.dataclass(frozen=True)
class RML2018Selection:
    """Which frames of a RadioML 2018 file to use, and how to label and split them.

    ``classes`` names the classes to keep, in the label order wanted (default all); ``snrs``
    the SNRs in dB (default all); ``max_frames_per_cell`` caps each (class, SNR) cell (drawn at
    random with ``seed``); ``class_names`` renames the one-hot columns (default the RML2018
    names); the splits are stratified by (class, SNR) with ``seed``; ``chunk`` is the rows read
    per h5py call.
    """

    classes: list[str] | None = None
    snrs: list[int] | None = None
    max_frames_per_cell: int | None = None
    class_names: list[str] | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    chunk: int = DEFAULT_CHUNK

    def open(self, path: str | os.PathLike[str]) -> RML2018Frames:
        """The file's frames, with this selection's class names and chunk; nothing read yet."""
        return RML2018Frames(path, class_names=self.class_names, chunk=self.chunk)


def label_subset(frames: RML2018Frames, selection: RML2018Selection) -> LabelledSubset:
    """The frames of :func:`select_frames`, relabelled in the order of ``selection.classes`` and
    split stratified by (class, SNR); reads no frame. One definition for the in-memory
    :func:`materialize_rml2018` and the lazy ``edgekd.data.lazy_rml2018.RML2018Dataset``."""
    classes, snrs = selection.classes, selection.snrs
    idx = select_frames(
        frames,
        classes=classes,
        snrs=snrs,
        max_frames_per_cell=selection.max_frames_per_cell,
        seed=selection.seed,
    )
    if len(idx) == 0:
        raise ConfigError(
            f"no frames of RadioML 2018 file {frames.path} match classes {classes} and snrs {snrs}",
            hint="widen data.rml2018.classes or data.rml2018.snrs",
        )
    names = list(classes) if classes else list(frames.class_names)
    remap = np.array([names.index(c) if c in names else -1 for c in frames.class_names], dtype=np.int64)
    y, snr = remap[frames.y[idx]], frames.snr[idx]
    split = assign_splits(y, snr, selection.val_fraction, selection.test_fraction, selection.seed)
    return LabelledSubset(rows=idx, y=y, class_names=names, snr=snr, split=split)


def materialize_rml2018(
    path: str | os.PathLike[str], selection: RML2018Selection | None = None
) -> ArrayDataset:
    """Read the frames ``selection`` chooses from a RadioML 2018 file into memory: x float32
    [n, 2, L], with labels, SNRs and splits. Only the chosen frames' rows are read from X."""
    selection = selection or RML2018Selection()
    frames = selection.open(path)
    try:
        subset = label_subset(frames, selection)
        check_memory(
            len(subset.rows) * 2 * frames.frame_length * 4,
            f"the {len(subset.rows)} frames chosen from RadioML 2018 file {path}",
            "lower data.rml2018.max_frames_per_cell, or keep fewer classes or SNRs",
            error=ConfigError,
        )
        return ArrayDataset(
            x=frames.read(subset.rows),
            y=subset.y,
            class_names=subset.class_names,
            snr=subset.snr,
            split=subset.split,
        )
    finally:
        frames.close()
