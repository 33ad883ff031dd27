"""The checks every data loader runs on what it read, kept in one place.

A loader hands its raw arrays to :func:`validate_arrays` and gets back an
:class:`~edgekd.data.dataset.ArrayDataset` whose frames are finite float32, whose labels are
integer class ids that fit the class names, and whose per-frame metadata (SNR, split) has
one entry per frame. :func:`check_splits` adds what training needs of a whole dataset (every
split holds frames, the train split holds every class); the data stage runs it before it
writes ``data.npz``.

Every check raises an :class:`~edgekd.errors.EdgeKDError` whose message starts with
``where`` (the file, e.g. ``dataset runs/kd/data.npz``) and names the array, so the CLI
prints one line that says which file is wrong and how. The checks are vectorised; large
arrays are checked for NaN/Inf in blocks (:data:`FINITE_BLOCK` elements), so no temporary
grows with the data; that costs about 0.1 s per GB of frames.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import EdgeKDError, InputFileError, ShapeError

if TYPE_CHECKING:
    from edgekd.data.dataset import ArrayDataset

# Elements per np.isfinite call: a 256 KiB temporary, small enough to stay in cache.
FINITE_BLOCK = 1 << 18
SPLIT_NAMES = ("train", "val", "test")  # split code 0, 1, 2 (re-exported as dataset.SPLITS)
FRAMES_HINT = "frames are real numbers: float32 x [N, C, L] (IQ) or [N, C, H, W] (images)"
_INT16 = np.iinfo(np.int16)
# Classes implied by the largest label when a file names none: beyond this a label is garbage.
MAX_UNNAMED_CLASSES = 100_000
_log = logging.getLogger("edgekd.data")
# Sources already told that their classes are named by number: a run opens its data several
# times (data stage, teacher, student, export...), and one line says it.
_unnamed_told: set[str] = set()


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(nbytes: int, what: str, hint: str, error: type[EdgeKDError] = InputFileError) -> None:
    """Refuse to hold ``nbytes`` in memory when that is more than half of this machine's RAM.

    A file that declares a huge array (or a recipe that asks for one) is refused before any
    allocation, instead of dying of MemoryError or being killed by the OS.
    """
    total = physical_memory()
    if total is not None and nbytes > total // 2:
        raise error(
            f"{what} would take {_gib(nbytes)} in memory, more than half of this machine's {_gib(total)}",
            hint=hint,
        )


def first_non_finite(arr: Any) -> int | None:
    """Index along axis 0 of the first entry holding NaN or ±Inf, or None when all are finite.

    Reads ``arr`` (a numpy array or anything sliceable into one) in blocks of about
    :data:`FINITE_BLOCK` elements. Integer and boolean arrays are finite by construction.
    """
    if np.dtype(arr.dtype).kind not in "fc":
        return None
    shape = tuple(arr.shape)
    if not shape:
        return None if np.isfinite(np.asarray(arr)) else 0
    rows = max(1, FINITE_BLOCK // max(1, math.prod(shape[1:])))
    for start in range(0, shape[0], rows):
        ok = np.isfinite(np.asarray(arr[start : start + rows]))
        if not ok.all():
            return start + int(np.argmin(ok.reshape(len(ok), -1).all(axis=1)))
    return None


def check_finite(arr: Any, what: str, offset: int = 0, rows: np.ndarray | None = None) -> None:
    """InputFileError naming ``what`` and the first frame holding NaN or ±Inf.

    The frame is reported as ``index + offset``, or as ``rows[index]`` when ``arr`` holds the
    rows ``rows`` of a file (a scattered read).
    """
    bad = first_non_finite(arr)
    if bad is not None:
        where = int(rows[bad]) if rows is not None else bad + offset
        raise InputFileError(
            f"{what} holds NaN or infinite values (first at frame {where})",
            hint="clean or regenerate the data; edgekd reads finite numbers only",
        )


def check_kind(arr: np.ndarray, what: str, kinds: str, hint: str) -> None:
    """Refuse arrays whose dtype is not one of ``kinds`` (numpy kind codes), e.g. object or complex."""
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in kinds or dtype.fields is not None:
        names = {
            "O": "Python objects",
            "c": "complex numbers",
            "U": "strings",
            "S": "byte strings",
            "b": "booleans",
            "V": "raw records",
            "M": "dates",
            "m": "time spans",
        }
        got = names.get(dtype.kind, "values of an unsupported type")
        raise InputFileError(f"{what} holds {got} ({dtype})", hint=hint)


def integral(arr: np.ndarray, what: str, hint: str) -> np.ndarray:
    """int64 copy of a bool/int/float array whose values are whole numbers; InputFileError otherwise."""
    check_kind(arr, what, "biuf", hint)
    if arr.dtype.kind in "biu":
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise InputFileError(f"{what} holds values beyond the int64 range", hint=hint)
        return arr.astype(np.int64)
    whole = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**62)
    if not whole.all():
        i = int(np.argmin(whole.reshape(-1)))
        raise InputFileError(
            f"{what} holds {arr.reshape(-1)[i].item()!r} at index {i}; expected whole numbers", hint=hint
        )
    return arr.astype(np.int64)


def check_frame_layout(x: np.ndarray, where: str) -> None:
    """Refuse frames that are not a non-empty real array [N, C, L] or [N, C, H, W] (reads no values)."""
    check_kind(x, f"{where}: x", "fiu", FRAMES_HINT)
    if x.ndim not in (3, 4):
        raise InputFileError(
            f"{where}: x has shape {list(x.shape)}; expected [N, C, L] or [N, C, H, W]", hint=FRAMES_HINT
        )
    if x.shape[0] == 0:
        raise InputFileError(f"{where}: x holds no frames (shape {list(x.shape)})", hint=FRAMES_HINT)
    if 0 in x.shape[1:]:
        raise InputFileError(
            f"{where}: x has zero-size frames of shape {list(x.shape[1:])}", hint=FRAMES_HINT
        )


def frame_array(x: Any, where: str) -> np.ndarray:
    """``x`` as float32 [N, C, L] or [N, C, H, W]: non-empty, finite. Refuses other shapes/dtypes."""
    x = np.asarray(x)
    check_frame_layout(x, where)
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: caught below
        frames = np.ascontiguousarray(x, dtype=np.float32)
    check_finite(frames, f"{where}: x")
    return frames


def labels_from_onehot(block: Any, what: str, start: int = 0) -> np.ndarray:
    """Class ids int64 [n] of one-hot rows [n, K]: each row holds exactly one 1 and zeros elsewhere.

    ``start`` is the row of ``block[0]`` in the file, for the message.
    """
    block = np.asarray(block)
    check_kind(block, what, "biuf", "one-hot labels are numbers, one 1 per row")
    ones = block == 1
    valid = (ones | (block == 0)).all(axis=1) & (ones.sum(axis=1) == 1)
    if not valid.all():
        i = int(np.argmin(valid))
        row = np.array2string(block[i][:8], precision=3, separator=",")
        raise InputFileError(
            f"{what} row {start + i} is not one-hot: {row}{'...' if block.shape[1] > 8 else ''}",
            hint="each row of a one-hot label holds a single 1 and 0 elsewhere",
        )
    return np.argmax(ones, axis=1).astype(np.int64)


def class_labels(y: Any, n: int, where: str) -> tuple[np.ndarray, int | None]:
    """Labels int64 [n] from ``y`` [n] class ids or [n, K] one-hot rows, and K (None for ids)."""
    y = np.asarray(y)
    hint = "store y as integer class ids [N] (or one-hot rows [N, K])"
    if y.ndim == 2 and y.shape[0] == n and y.shape[1] > 1:
        return labels_from_onehot(y, f"{where}: y", 0), int(y.shape[1])
    if y.shape == (n, 1):  # a column of class ids
        y = y.reshape(n)
    if y.shape != (n,):
        raise InputFileError(
            f"{where}: y has shape {list(y.shape)}; expected [{n}], one label per frame of x", hint=hint
        )
    labels = integral(y, f"{where}: y", hint)
    if labels.size and labels.min() < 0:
        raise InputFileError(
            f"{where}: y holds the negative label {int(labels.min())}", hint="class ids start at 0"
        )
    return labels, None


def class_name_list(names: Any, where: str) -> list[str]:
    """Class names from a 1-D string array or list: non-empty, printable, each name once."""
    arr = np.asarray(names)
    hint = "class_names is a 1-D array of distinct, non-empty strings, one per class"
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise InputFileError(f"{where}: class_names is {arr.dtype} of shape {list(arr.shape)}", hint=hint)
    try:
        out = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.tolist()]
    except UnicodeDecodeError:
        raise InputFileError(f"{where}: class_names are not UTF-8 text", hint=hint) from None
    bad = next((name for name in out if not name.strip() or not name.isprintable()), None)
    if bad is not None:
        raise InputFileError(f"{where}: class name {bad!r} is empty or not printable", hint=hint)
    if len(set(out)) != len(out):
        twice = sorted({name for name in out if out.count(name) > 1})
        raise InputFileError(f"{where}: class_names lists {twice[0]!r} twice", hint=hint)
    return out


def check_class_count(count: int, where: str, hint: str = "give the data at least two classes") -> None:
    if count < 2:
        raise InputFileError(f"{where} holds {count} class; a classifier needs at least 2", hint=hint)


def snr_labels(snr: Any, n: int, where: str, name: str = "snr") -> np.ndarray:
    """SNR labels int16 [n] in dB from [n] or [n, 1]: whole numbers within the int16 range."""
    arr = np.asarray(snr)
    hint = f"{name} holds one whole-number SNR in dB per frame"
    if arr.size != n or arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise InputFileError(f"{where}: {name} has shape {list(arr.shape)}; expected [{n}]", hint=hint)
    values = integral(arr.reshape(-1), f"{where}: {name}", hint)
    if values.size and (values.min() < _INT16.min or values.max() > _INT16.max):
        raise InputFileError(f"{where}: {name} holds {int(np.abs(values).max())} dB, out of range", hint=hint)
    return values.astype(np.int16)


def split_codes(split: Any, n: int, where: str) -> np.ndarray:
    """Split codes int8 [n]: 0 train, 1 val, 2 test."""
    arr = np.asarray(split)
    hint = "split holds one code per frame: 0 train, 1 val, 2 test"
    if arr.shape != (n,):
        raise InputFileError(f"{where}: split has shape {list(arr.shape)}; expected [{n}]", hint=hint)
    codes = integral(arr, f"{where}: split", hint)
    outside = (codes < 0) | (codes > 2)
    if outside.any():
        raise InputFileError(f"{where}: split holds the code {int(codes[outside][0])}", hint=hint)
    return codes.astype(np.int8)


def group_keys(group: Any, n: int, where: str) -> np.ndarray:
    """Group keys [n] (whole numbers or strings) from [n] or [n, 1]: frames sharing one never
    straddle the splits drawn for them (:func:`edgekd.data.splits.assign_group_splits`)."""
    arr = np.asarray(group)
    hint = "group holds one key per frame (a burst, a patient id): integers or strings"
    if arr.size != n or arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise InputFileError(f"{where}: group has shape {list(arr.shape)}; expected [{n}]", hint=hint)
    arr = arr.reshape(n)
    if arr.dtype.kind in "US":
        return arr
    return integral(arr, f"{where}: group", hint)


def warn_unnamed_classes(where: str, count: int, near_miss: str | None = None) -> None:
    """One warning line per source and process: ``where`` names no classes, so they are called
    '0'..'K-1' (reports, checkpoints and an ONNX teacher's class check then see those names).
    ``near_miss``: an array of the file that looks like the class names, to rename."""
    if where in _unnamed_told:
        return
    _unnamed_told.add(where)
    fix = (
        f"rename its array {near_miss!r} to 'class_names'"
        if near_miss
        else f"add a class_names array of {count} strings, in label order"
    )
    _log.warning("%s has no class_names: its classes are named '0'..'%d' (fix: %s)", where, count - 1, fix)


def validate_labels(
    n: int,
    y: Any,
    *,
    where: str,
    class_names: Any = None,
    snr: Any = None,
    split: Any = None,
    names_near_miss: str | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray | None, np.ndarray | None]:
    """Check the per-frame metadata of ``n`` frames read from ``where``; reads no frame.

    Returns ``(y int64 [n], class names [K], snr int16 [n] | None, split int8 [n] | None)``;
    the arguments are as in :func:`validate_arrays`. Without ``class_names`` the classes are
    named '0'..'K-1' and one warning line says so (naming ``names_near_miss``, an array of
    the file that looks like the names, when given). Lazy datasets call this when they are
    opened and check the frames themselves as they are read.
    """
    labels, width = class_labels(y, n, where)
    names = class_name_list(class_names, where) if class_names is not None else None
    count = len(names) if names is not None else width or (int(labels.max()) + 1 if labels.size else 0)
    if names is None and count > MAX_UNNAMED_CLASSES:
        raise InputFileError(
            f"{where}: y holds the label {count - 1} and no class_names say there are that many classes",
            hint="store class ids 0..K-1 and class_names [K]",
        )
    if width is not None and width != count:
        raise InputFileError(
            f"{where}: y is one-hot over {width} classes but class_names has {count}",
            hint="give one class name per one-hot column",
        )
    if labels.size and labels.max() >= count:
        raise InputFileError(
            f"{where}: y holds the label {int(labels.max())} but there are {count} class names",
            hint="give one class name per class id 0..K-1",
        )
    snr_codes = None if snr is None else snr_labels(snr, n, where)
    split_code = None if split is None else split_codes(split, n, where)
    check_class_count(count, where)
    if names is None:
        warn_unnamed_classes(where, count, names_near_miss)
        names = [str(i) for i in range(count)]
    return labels, names, snr_codes, split_code


def validate_arrays(x: Any, y: Any, *, where: str, **labels: Any) -> ArrayDataset:
    """Check raw arrays read from ``where`` and build the dataset; one line naming the problem otherwise.

    Args:
        x: frames [N, C, L] or [N, C, H, W], any real numeric dtype (stored as float32; NaN/Inf,
            empty arrays and zero-size frames are refused).
        y: class ids [N] (whole numbers >= 0) or one-hot rows [N, K].
        where: what the arrays came from, e.g. ``"dataset runs/kd/data.npz"``; starts every message.
        labels: the optional per-frame metadata of :func:`validate_labels`: ``class_names``
            ([K] strings; default ``"0".."K-1"`` from the labels, with one warning line;
            labels must be < K, K >= 2),
            ``snr`` ([N] or [N, 1] SNR labels in dB, whole numbers), ``split`` ([N] codes 0/1/2),
            ``names_near_miss`` (for the warning when there are no class names).
    """
    from edgekd.data.dataset import ArrayDataset

    x_arr = np.asarray(x)
    check_frame_layout(x_arr, where)
    y_ids, names, snr_codes, split_code = validate_labels(int(x_arr.shape[0]), y, where=where, **labels)
    frames = frame_array(x_arr, where)  # last: the one check that reads every value
    return ArrayDataset(x=frames, y=y_ids, class_names=names, snr=snr_codes, split=split_code, source=where)


def validate_dataset(dataset: ArrayDataset, where: str) -> ArrayDataset:
    """:func:`validate_arrays` over a dataset built in memory (a generator's or a loader's output)."""
    return validate_arrays(
        dataset.x,
        dataset.y,
        where=where,
        class_names=dataset.class_names,
        snr=dataset.snr,
        split=dataset.split,
    )


def check_splits(dataset: ArrayDataset, where: str, hint: str) -> None:
    """What training and the later stages need: every split holds frames, train >= 2 and every class.

    ``hint`` says how to fix the source (which recipe option or array to change).
    """
    if dataset.split is None:
        # Assigned here, a split would differ between the stages that reopen a file (and bench,
        # quantize and export score a file without one whole): the file carries it instead.
        raise InputFileError(
            f"{where} has no split labels; training needs them",
            hint="add a split array [N] (0 train, 1 val, 2 test); edgekd.data.splits.assign_splits(y, snr) "
            "draws a seeded one stratified by class and SNR",
        )
    counts = np.bincount(dataset.split, minlength=len(SPLIT_NAMES))
    for code, name in enumerate(SPLIT_NAMES):
        if counts[code] == 0:
            raise InputFileError(f"{where}: the {name!r} split is empty", hint=hint)
    if counts[0] < 2:
        raise InputFileError(
            f"{where}: the 'train' split holds {counts[0]} frame; training needs 2 or more", hint=hint
        )
    per_class = np.bincount(dataset.y[dataset.split == 0], minlength=dataset.num_classes)
    missing = [dataset.class_names[i] for i in np.flatnonzero(per_class == 0)]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputFileError(f"{where}: the 'train' split holds no frame of class {shown}", hint=hint)


def check_input_shape(dataset: ArrayDataset, expected: list[int] | tuple[int, ...], where: str) -> None:
    """ShapeError unless one frame of ``dataset``, as the network takes it, has the shape
    ``expected`` (empty: any shape). Raw uint8 grayscale pixels [1, S, S] are taken as [3, S, S]
    (:func:`edgekd.data.batches.network_input_shape`)."""
    from edgekd.data.batches import network_input_shape

    shape = network_input_shape(dataset)
    if expected and tuple(shape) != tuple(int(d) for d in expected):
        raise ShapeError(
            f"{where} holds frames of shape {list(shape)} but the recipe expects "
            f"{list(expected)} (data.input_shape)",
            hint="use data of that shape, or change data.input_shape to match the data",
        )
