"""RadioML 2016.10a (and 2016.04c / 2016.10b) pickles, read through a restricted unpickler.

The published file is a pickled dict ``{(modulation: str, snr_db: int): float32 [n, 2, 128]}``
written by Python 2 (so its byte strings need ``encoding="latin1"``). A pickle can run any
callable it names, so it is never read with :func:`pickle.load`: :class:`RestrictedUnpickler`
resolves only the globals that rebuilding numpy arrays needs and refuses every other one
before it is called.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import reprlib
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import ArrayDataset
from edgekd.data.splits import assign_group_splits, burst_groups
from edgekd.data.validate import check_finite, check_kind, check_memory
from edgekd.errors import ConfigError, InputFileError
from edgekd.registry import suggestion

# What a truncated or garbled stream raises from inside the unpickler or numpy's rebuild.
# MemoryError: np.ndarray is callable from the stream, and a forged shape can ask for terabytes.
_UNREADABLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    MemoryError,
    RecursionError,
    OverflowError,
)
LAYOUT_HINT = "a RadioML 2016 pickle is a dict {(modulation, snr_db): float32 array [n, 2, 128]}"
_SHORT = reprlib.Repr()  # keys shown in messages: a forged key may be huge or deeply nested
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 40, 40, 2
# Frames per burst for the split. The published generator slices each channel run into a few
# dozen consecutive frames, so neighbours share a capture; 100 cuts a 1,000-frame cell of
# RML2016.10a into 10 bursts, which the default 0.1/0.2 fractions split 7/1/2.
BURST_FRAMES = 100


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set; it was not called."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Protocol 0-2 pickles written by Python 3 store ``bytes`` as _codecs.encode(text, "latin1").
    # Only that codec is served: other codecs (zlib, base64...) are not needed by the format.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object: everything a pickled dict of numpy arrays may reference.

    ``_reconstruct`` + ``ndarray`` + ``dtype`` rebuild arrays pickled with protocol <= 4
    (Python 2 included); ``_frombuffer`` those pickled with protocol 5; ``scalar`` numpy
    integer keys (an SNR stored as np.int64). Both numpy 1 (``numpy.core``) and numpy 2
    (``numpy._core``) module paths are accepted, since files name the writer's path.
    """
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.26
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :func:`_allowed_globals`.

    Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises
    :class:`pickle.UnpicklingError` from :meth:`find_class`, before it could be called.
    Persistent ids are refused too.
    """

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("persistent ids are not allowed")


def restricted_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle ``data`` allowing only numpy array reconstruction; InputFileError otherwise."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except RefusedGlobal as exc:
        raise InputFileError(
            f"{what} refused: {exc}",
            hint="a RadioML 2016 pickle holds only a dict of numpy arrays; load only files you trust",
        ) from None
    except _UNREADABLE as exc:
        raise InputFileError(
            f"{what} is not a readable pickle: {type(exc).__name__}: {exc}",
            hint="the file is truncated or corrupt; download it again",
        ) from None


def _key(key: Any, where: str) -> tuple[str, int]:
    """(modulation, snr_db) from a dict key; InputFileError for anything else."""
    ok = (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], (str, bytes))
        and isinstance(key[1], (int, np.integer))
        and not isinstance(key[1], (bool, np.bool_))
    )
    if not ok:
        raise InputFileError(
            f"{where} has key {_SHORT.repr(key)}; expected (modulation, snr)", hint=LAYOUT_HINT
        )
    name = key[0].decode("latin1") if isinstance(key[0], bytes) else key[0]
    if not name.strip() or not name.isprintable():
        raise InputFileError(f"{where} has the modulation name {name!r}", hint=LAYOUT_HINT)
    if not -(2**15) <= int(key[1]) < 2**15:
        raise InputFileError(f"{where}: key {_SHORT.repr(key)} has an SNR out of range", hint=LAYOUT_HINT)
    return name, int(key[1])


def _frames(value: Any, label: str, where: str, budget: int) -> np.ndarray:
    """One entry's frames [n, 2, L], checked: numeric, non-empty, no more data than the file holds."""
    if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[1] != 2:
        shape = list(value.shape) if isinstance(value, np.ndarray) else type(value).__name__
        raise InputFileError(
            f"{where}: entry {label} has shape {shape}; expected [n, 2, L]", hint=LAYOUT_HINT
        )
    check_kind(value, f"{where}: entry {label}", "fiu", LAYOUT_HINT)
    if 0 in value.shape:
        raise InputFileError(
            f"{where}: entry {label} holds no frames (shape {list(value.shape)})", hint=LAYOUT_HINT
        )
    if value.nbytes > budget:
        # np.ndarray(shape) called from the stream makes an array the file's bytes never filled.
        raise InputFileError(
            f"{where}: entry {label} declares {value.nbytes} bytes, more than the file holds",
            hint="the file is corrupt or forged; download it again",
        )
    return value


def read_rml2016_pickle(path: str | os.PathLike[str]) -> dict[tuple[str, int], np.ndarray]:
    """The raw dict of a RadioML 2016 pickle, checked: {(mod, snr): float32 [n, 2, L]}.

    Every entry must be a real-valued array [n, 2, L] with n, L > 0, the same L everywhere and
    only finite values; keys are (non-empty name, SNR in dB). Anything else is an
    InputFileError naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"RadioML 2016 file {path} does not exist", hint="check data.path")
    where = f"RadioML 2016 file {path}"
    # The bytes and the arrays rebuilt from them are both held while reading.
    check_memory(2 * path.stat().st_size, where, "use a smaller file")
    blob = path.read_bytes()
    data = restricted_loads(blob, what=where)
    if not isinstance(data, dict) or not data:
        raise InputFileError(f"{where} holds {type(data).__name__}, not a non-empty dict", hint=LAYOUT_HINT)
    frames: dict[tuple[str, int], np.ndarray] = {}
    length, budget = None, len(blob)
    for key, value in data.items():
        name, snr = _key(key, where)
        label = repr((name, snr))
        block = _frames(value, label, where, budget)
        budget -= block.nbytes
        if length is not None and block.shape[2] != length:
            raise InputFileError(
                f"{where}: entry {label} has frames of length {block.shape[2]}, others {length}",
                hint="every entry holds frames of one length, e.g. [n, 2, 128]",
            )
        if (name, snr) in frames:
            raise InputFileError(
                f"{where} holds the entry {label} twice (as str and bytes)", hint=LAYOUT_HINT
            )
        length = block.shape[2]
        frames[(name, snr)] = block
    for label, block in frames.items():  # after the cheap checks: this one reads every value
        check_finite(block, f"{where}: entry {label}")
    return frames


def file_class_order(frames: dict[tuple[str, int], np.ndarray]) -> list[str]:
    """The modulations of a pickle's dict in the order they first appear among its keys."""
    return list(dict.fromkeys(mod for mod, _ in frames))


def _chosen_classes(path: Any, present: list[str], classes: list[str] | None) -> list[str]:
    names = list(classes) if classes else present
    for name in names:
        if name not in present:
            raise ConfigError(
                f"class {name!r} is not in RadioML 2016 file {path}",
                hint=suggestion(name, present, "classes in the file"),
            )
    if len(set(names)) != len(names):
        raise ConfigError("classes lists a modulation twice", hint="name each class once")
    return names


def load_rml2016(
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    snrs: list[int] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    burst_frames: int = BURST_FRAMES,
) -> ArrayDataset:
    """Read a RadioML 2016 pickle into an :class:`ArrayDataset` x float32 [N, 2, L].

    Args:
        path: the ``.pkl`` file (e.g. ``RML2016.10a_dict.pkl``).
        classes: class names in label order, a subset of the file's; default all, in the
            order each modulation first appears among the file's keys.
        snrs: SNR labels (dB) to keep; default all in the file.
        val_fraction, test_fraction, seed: the split, stratified by (class, SNR) with
            :func:`edgekd.data.splits.assign_group_splits`, by bursts.
        burst_frames: frames of one (class, SNR) entry are cut, in their file order, into
            contiguous bursts of at most this many frames (at least 10 bursts per entry,
            :func:`edgekd.data.splits.burst_groups`); a burst never spans two splits, since
            neighbouring frames come from one capture. 1 splits frame by frame.

    Frames are ordered by class label, then SNR ascending, then their order in the file.
    """
    frames = read_rml2016_pickle(path)
    names = _chosen_classes(path, file_class_order(frames), classes)
    keep_snr = None if snrs is None else {int(s) for s in snrs}
    xs, ys, ss = [], [], []
    for label, name in enumerate(names):
        for snr in sorted(s for mod, s in frames if mod == name):
            if keep_snr is not None and snr not in keep_snr:
                continue
            block = frames[(name, snr)]
            xs.append(block)
            ys.append(np.full(len(block), label, dtype=np.int64))
            ss.append(np.full(len(block), snr, dtype=np.int16))
    if not xs:
        raise ConfigError(f"no frames of RadioML 2016 file {path} match snrs {sorted(keep_snr or [])}")
    y, snr = np.concatenate(ys), np.concatenate(ss)
    bursts = burst_groups(y * 2**16 + (snr.astype(np.int64) + 2**15), burst_frames)  # one id per cell
    return ArrayDataset(
        x=np.concatenate(xs).astype(np.float32, copy=False),
        y=y,
        class_names=names,
        snr=snr,
        split=assign_group_splits(bursts, y, snr, val_fraction, test_fraction, seed),
    )
