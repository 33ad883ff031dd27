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
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import ArrayDataset
from edgekd.data.splits import assign_splits
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
)


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
        raise InputFileError(f"{what} is not a readable pickle: {type(exc).__name__}: {exc}") from None


def read_rml2016_pickle(path: str | os.PathLike[str]) -> dict[tuple[str, int], np.ndarray]:
    """The raw dict of a RadioML 2016 pickle, checked: {(mod, snr): float32 [n, 2, L]}."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"RadioML 2016 file {path} does not exist", hint="check data.path")
    data = restricted_loads(path.read_bytes(), what=f"RadioML 2016 file {path}")
    if not isinstance(data, dict) or not data:
        raise InputFileError(
            f"RadioML 2016 file {path} holds {type(data).__name__}, not a non-empty dict",
            hint="expected {(modulation, snr): array [n, 2, 128]}",
        )
    frames: dict[tuple[str, int], np.ndarray] = {}
    length = None
    for key, value in data.items():
        if not (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], (str, bytes))
            and isinstance(key[1], (int, np.integer))
            and not isinstance(key[1], bool)
        ):
            raise InputFileError(f"RadioML 2016 file {path} has key {key!r}; expected (modulation, snr)")
        if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[1] != 2:
            shape = getattr(value, "shape", type(value).__name__)
            raise InputFileError(
                f"RadioML 2016 file {path}: entry {key!r} has shape {shape}; expected [n, 2, L]"
            )
        if length is not None and value.shape[2] != length:
            raise InputFileError(
                f"RadioML 2016 file {path}: {key!r} has frames of length {value.shape[2]}, others {length}"
            )
        length = value.shape[2]
        name = key[0].decode("latin1") if isinstance(key[0], bytes) else key[0]
        frames[(name, int(key[1]))] = value
    return frames


def load_rml2016(
    path: str | os.PathLike[str],
    *,
    classes: list[str] | None = None,
    snrs: list[int] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ArrayDataset:
    """Read a RadioML 2016 pickle into an :class:`ArrayDataset` x float32 [N, 2, L].

    Args:
        path: the ``.pkl`` file (e.g. ``RML2016.10a_dict.pkl``).
        classes: class names in label order, a subset of the file's; default all, sorted.
        snrs: SNR labels (dB) to keep; default all in the file.
        val_fraction, test_fraction, seed: the split, stratified by (class, SNR) with
            :func:`edgekd.data.splits.assign_splits`.

    Frames are ordered by class label, then SNR ascending, then their order in the file.
    """
    frames = read_rml2016_pickle(path)
    present = sorted({mod for mod, _ in frames})
    names = list(classes) if classes else present
    for name in names:
        if name not in present:
            raise ConfigError(
                f"class {name!r} is not in RadioML 2016 file {path}",
                hint=suggestion(name, present, "classes in the file"),
            )
    if len(set(names)) != len(names):
        raise ConfigError("classes lists a modulation twice", hint="name each class once")
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
    return ArrayDataset(
        x=np.concatenate(xs).astype(np.float32, copy=False),
        y=y,
        class_names=names,
        snr=snr,
        split=assign_splits(y, snr, val_fraction, test_fraction, seed),
    )
