"""In memory or lazy: one rule, by size, with an override.

:func:`choose_storage` keeps a data set in memory when its samples, as float32, take at most
:data:`MEMORY_FRACTION` of this machine's RAM (a quarter: the in-memory loaders briefly hold
two copies while they build it, and the rest of the run needs room), and reads it lazily
otherwise. ``storage="memory"`` or ``"lazy"`` overrides the rule.

:func:`open_map_dataset` applies it to a recipe's ``data:`` section and returns a map-style
dataset (:mod:`edgekd.data.mapstyle`) either way:

============================  =========================================================
source                        lazy form
============================  =========================================================
``imagefolder``               :class:`~edgekd.data.lazy_images.LazyImageFolder`
``rml2018``                   :class:`~edgekd.data.lazy_rml2018.RML2018Dataset`
``npz`` (or a .npy folder)    :class:`~edgekd.data.lazy_arrays.ArrayFileDataset`
``synthetic_modulation``,     none: generated or unpickled whole, always in memory
``rml2016``
============================  =========================================================

A section with ``data.test_path`` is always held in memory (its two files are joined there).
The in-memory form is :func:`edgekd.data.sources.load_dataset`'s result (the path every
pipeline stage and the demo use today, unchanged) wrapped in a
:class:`~edgekd.data.mapstyle.MemoryDataset`. Both forms pass the same checks: splits that
hold samples (train every class) and ``data.input_shape``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Literal

from edgekd.data.dataset import NPZ_HINT, npy_header
from edgekd.data.mapstyle import MapDataset, MemoryDataset
from edgekd.data.sources import LAZY_SOURCES, DataSpec, Resolve, describe_source, load_dataset, split_hint
from edgekd.data.validate import check_input_shape, check_splits, physical_memory
from edgekd.errors import ConfigError, InputFileError

Storage = Literal["auto", "memory", "lazy"]
STORAGES = ("auto", "memory", "lazy")
MEMORY_FRACTION = 0.25
# The budget where the OS does not say how much RAM there is.
FALLBACK_BUDGET = 2 << 30


def choose_storage(nbytes: int, storage: str = "auto", *, memory_fraction: float = MEMORY_FRACTION) -> str:
    """``"memory"`` or ``"lazy"`` for a data set whose samples take ``nbytes`` as float32.

    ``storage`` "memory" or "lazy" is returned as it is (the override); "auto" gives "memory"
    when ``nbytes <= memory_fraction * physical RAM`` (2 GiB where RAM is unknown).
    """
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}", hint=f"use one of {', '.join(STORAGES)}")
    if storage != "auto":
        return storage
    if not 0 < memory_fraction <= 1:
        raise ConfigError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    total = physical_memory()
    budget = total * memory_fraction if total else FALLBACK_BUDGET
    return "memory" if nbytes <= budget else "lazy"


def _open_lazy(spec: DataSpec, path: Path, draft: bool) -> MapDataset:
    if spec.source == "imagefolder":
        from edgekd.data.lazy_images import LazyImageFolder

        opts = spec.imagefolder
        return LazyImageFolder(opts.open_folder(path), max_per_class=opts.max_per_class, draft=draft)
    if spec.source == "rml2018":
        from edgekd.data.lazy_rml2018 import RML2018Dataset

        return RML2018Dataset(path, spec.rml2018.selection())
    from edgekd.data.lazy_arrays import ArrayFileDataset

    return ArrayFileDataset(path)


def _compressed_npz_bytes(path: Path) -> int:
    """float32 bytes of the frames of an npz whose ``x`` is compressed (reads its header only)."""
    where = f"dataset {path}"
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as handle:
            shape, _, _ = npy_header(handle, "x", where)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{where} is not a readable npz file: {exc}", hint=NPZ_HINT) from None
    return 4 * math.prod(shape)


def open_map_dataset(
    spec: DataSpec,
    resolve: Resolve = Path,
    storage: str = "auto",
    *,
    memory_fraction: float = MEMORY_FRACTION,
    draft: bool = True,
) -> MapDataset:
    """The data ``spec`` names as a map-style dataset, in memory or lazy (see the module doc).

    Args:
        spec: the recipe's data section (validated here).
        resolve: maps ``spec.path`` to a file, as in :func:`edgekd.data.sources.load_dataset`.
        storage: "auto" (by size, :func:`choose_storage`), "memory" or "lazy".
        memory_fraction: the share of RAM "auto" allows in memory.
        draft: reduced-scale JPEG decoding for a lazy image folder (see
            :func:`edgekd.data.images.decode_image`).

    Raises:
        ConfigError: bad options, or "lazy" for a source that is read whole;
        InputFileError: a missing or malformed file, an empty split, a wrong shape.
    """
    spec.validate()
    choose_storage(0, storage)  # refuses an unknown storage before anything is read
    if spec.test_path:  # two files joined: only the in-memory form exists
        if storage == "lazy":
            raise ConfigError(
                "data.test_path joins two files in memory; they have no lazy form",
                hint="use storage 'auto' or 'memory', or remove data.test_path",
            )
        return MemoryDataset(load_dataset(spec, resolve))
    if spec.source not in LAZY_SOURCES:
        if storage == "lazy":
            raise ConfigError(
                f"data source {spec.source!r} is read into memory whole; it has no lazy form",
                hint="use storage 'auto' or 'memory'",
            )
        return MemoryDataset(load_dataset(spec, resolve))
    path = resolve(spec.path) if spec.path else Path()
    if not path.exists():
        raise InputFileError(f"data.path {path} does not exist", hint="check data.path")
    try:
        lazy: MapDataset | None = _open_lazy(spec, path, draft)
        nbytes = lazy.nbytes
    except InputFileError as exc:
        from edgekd.data.lazy_arrays import CompressedArrayError

        if not isinstance(exc, CompressedArrayError) or storage == "lazy":
            raise
        lazy, nbytes = None, _compressed_npz_bytes(path)
        if choose_storage(nbytes, storage, memory_fraction=memory_fraction) == "lazy":
            raise
    if lazy is None or choose_storage(nbytes, storage, memory_fraction=memory_fraction) == "memory":
        return MemoryDataset(load_dataset(spec, resolve))
    where = describe_source(spec, path)
    check_input_shape(lazy, spec.input_shape, where)
    check_splits(lazy, where, split_hint(spec.source))
    return lazy
