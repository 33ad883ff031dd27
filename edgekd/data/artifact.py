"""The data stage's artifact, whichever way the data is stored, and the one way to open it.

``edgekd data`` (the first pipeline stage) leaves one of two files that every later stage,
and every ``--data`` option, reads through :func:`open_data`:

* ``data.npz``: the frames themselves (data that fits in memory, the demo's). Opened in
  memory when it fits (:func:`edgekd.data.storage.choose_storage`), memory-mapped otherwise;
* ``data.json``: a *data index* for data read lazily. It names the source (the recipe's
  data section and the absolute path of its file or folder) and, for an image folder, the
  prepared uint8 image cache beside it (``data-images.npy``, decoded once by the data stage:
  :func:`edgekd.data.lazy_images.prepare_image_cache`). It records the class names, the
  frame count and the sha256 of the labels and splits, so a source that changed since the
  data stage is refused instead of read as something else.

Image data opened from an index gives raw uint8 pixels [C, S, S] (C = 1 for grayscale
scans); :func:`edgekd.data.batches.model_input` normalises them where the network runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import atomic_write_json, require_file, write_manifest
from edgekd.config import from_dict, to_dict
from edgekd.data.mapstyle import MapDataset
from edgekd.data.sources import LAZY_SOURCES, DataSpec, describe_source, split_hint
from edgekd.errors import ConfigError, InputFileError

INDEX_FORMAT = "edgekd.data-index/1"
INDEX_NAME = "data.json"
IMAGE_CACHE_NAME = "data-images.npy"
RERUN_HINT = "run the data stage again (edgekd run, or delete the run folder's data.json)"


def labels_digest(dataset: MapDataset) -> str:
    """sha256 of what a data index promises about its dataset: classes, labels, splits, rows."""
    digest = hashlib.sha256(json.dumps(dataset.class_names).encode())
    for arr in (dataset.y, dataset.split, dataset.rows):
        if arr is not None:
            digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def open_lazy_source(spec: DataSpec, path: Path) -> MapDataset:
    """The lazy dataset of a data section whose source is at ``path`` (an image folder gives its
    listing, decoded on access; :func:`prepare_images` caches the pixels)."""
    if spec.source not in LAZY_SOURCES:
        raise ConfigError(
            f"data source {spec.source!r} is read into memory whole; it has no lazy form",
            hint="use data.storage: auto or memory",
        )
    from edgekd.data.storage import open_map_dataset

    if spec.source == "imagefolder":
        from edgekd.data.lazy_images import LazyImageFolder

        opts = spec.imagefolder
        folder = LazyImageFolder(opts.open_folder(path), max_per_class=opts.max_per_class, raw=True)
        return check_training_set(folder, spec, path)
    # An npz kept in memory on purpose (data.storage: memory) stays so when reopened.
    return open_map_dataset(spec, lambda _p: path, "memory" if spec.storage == "memory" else "lazy")


def check_training_set(dataset: MapDataset, spec: DataSpec, path: Path) -> MapDataset:
    """``dataset`` (read from ``path`` as ``spec`` says) once its frames have ``data.input_shape``
    and its splits hold frames, train every class; ShapeError/InputFileError naming it otherwise."""
    from edgekd.data.validate import check_input_shape, check_splits

    where = describe_source(spec, path)
    check_input_shape(dataset, spec.input_shape, where)
    check_splits(dataset, where, split_hint(spec.source))
    return dataset


def prepare_images(folder: MapDataset, out_dir: Path, workers: int, say: Any = None) -> MapDataset:
    """Decode an image folder once into ``out_dir/data-images.npy`` (reused when its images and
    settings are unchanged): the cached dataset, raw uint8 pixels."""
    from edgekd.data.lazy_images import CachedImageDataset, prepare_image_cache

    cached = prepare_image_cache(folder, out_dir / IMAGE_CACHE_NAME, workers=workers, say=say)
    return CachedImageDataset(folder, cached.path, raw=True)


def source_stat(source: Path) -> dict[str, int] | None:
    """Size and modification time (ns) of a source file, for an index to notice a file rewritten
    in place with the same labels (new frame values); None for a folder (an image folder's
    pixel cache is keyed by every image's size and time instead)."""
    if not source.is_file():
        return None
    stat = source.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_index(
    path: Path, spec: DataSpec, source: Path, dataset: MapDataset, image_cache: str | None
) -> None:
    """Write the data index ``path`` (atomically, with its manifest) for ``dataset``."""
    index = {
        "format": INDEX_FORMAT,
        "spec": to_dict(spec),
        "source_path": str(source.resolve()),
        "image_cache": image_cache,
        "frames": len(dataset),
        "input_shape": list(dataset.input_shape),
        "class_names": dataset.class_names,
        "labels_sha256": labels_digest(dataset),
        "source_stat": source_stat(source),
    }
    atomic_write_json(path, index)
    parents = [source] if source.is_file() else None
    write_manifest(
        path, "data-index", config=to_dict(spec), parents=parents, metrics={"frames": len(dataset)}
    )


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"data index {path} is not readable JSON: {exc}", hint=RERUN_HINT) from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise InputFileError(
            f"data index {path} is not an edgekd data index ({INDEX_FORMAT})", hint=RERUN_HINT
        )
    for key, kind in (("spec", dict), ("source_path", str), ("frames", int), ("labels_sha256", str)):
        if not isinstance(index.get(key), kind) or isinstance(index.get(key), bool):
            raise InputFileError(
                f"data index {path}: {key!r} is missing or not a {kind.__name__}", hint=RERUN_HINT
            )
    cache = index.get("image_cache")
    # The cache is a plain file beside the index: a name from the file never leads elsewhere.
    if cache is not None and (
        not isinstance(cache, str) or cache != Path(cache).name or cache in ("", ".", "..")
    ):
        raise InputFileError(f"data index {path}: image_cache must name a file beside it", hint=RERUN_HINT)
    return index


def open_index(path: Path) -> MapDataset:
    """The dataset a data index describes, checked against what the index recorded."""
    index = _read_index(path)
    try:
        spec = from_dict(DataSpec, index["spec"], "spec")
        spec.validate()
        if spec.source not in LAZY_SOURCES:
            raise ConfigError(f"data source {spec.source!r} has no lazy form")
    except ConfigError as exc:
        raise InputFileError(f"data index {path}: {exc.message}", hint=RERUN_HINT) from None
    source = Path(index["source_path"])
    if not source.exists():
        raise InputFileError(
            f"data index {path} reads {source}, which no longer exists",
            hint="restore the data or " + RERUN_HINT,
        )
    dataset = open_lazy_source(spec, source)
    if index["image_cache"] is not None:
        from edgekd.data.lazy_images import CachedImageDataset, cache_key

        cache = path.parent / index["image_cache"]
        _check_image_cache(cache, cache_key(dataset, "auto"), path)
        dataset = CachedImageDataset(dataset, cache, raw=True)
    recorded = index.get("source_stat")  # absent from indexes written before it was recorded
    changed = recorded is not None and recorded != source_stat(source)
    if changed or len(dataset) != index["frames"] or labels_digest(dataset) != index["labels_sha256"]:
        raise InputFileError(
            f"data index {path}: the data at {source} changed since the data stage read it", hint=RERUN_HINT
        )
    return dataset


def _check_image_cache(cache: Path, key: str, index: Path) -> None:
    from edgekd.artifacts import read_manifest

    if not cache.is_file():
        raise InputFileError(f"data index {index}: its image cache {cache} is missing", hint=RERUN_HINT)
    manifest = read_manifest(cache, required=False)
    if manifest.get("config", {}).get("key") != key or manifest.get("size_bytes") != cache.stat().st_size:
        raise InputFileError(
            f"data index {index}: the images changed since {cache} was prepared (or it is incomplete)",
            hint=RERUN_HINT,
        )


def open_data(path: str | Path, *, storage: str = "auto") -> MapDataset:
    """The data stage's artifact at ``path`` as a map-style dataset (see the module doc).

    ``storage`` applies to an npz: "auto" (in memory when it fits), "memory" or "lazy".
    Raises InputFileError naming the file for a missing, malformed or stale artifact.
    """
    path = require_file(path, "dataset", hint="run the data stage, or give an .npz or data.json")
    if path.suffix == ".json":
        return open_index(path)
    return _open_npz(path, storage)


def _open_npz(path: Path, storage: str) -> MapDataset:
    """An npz memory-mapped when ``storage`` (or, for "auto", its size) says lazy, else read.

    No split checks here: a file given to ``bench``/``quantize``/``export`` may hold no split
    labels (it is scored whole), and each command checks the splits it uses.
    """
    from edgekd.data.dataset import load_npz
    from edgekd.data.lazy_arrays import ArrayFileDataset, CompressedArrayError
    from edgekd.data.mapstyle import MemoryDataset
    from edgekd.data.storage import choose_storage

    choose_storage(0, storage)  # refuses an unknown storage before anything is read
    if storage != "memory":
        try:
            lazy = ArrayFileDataset(path)
        except CompressedArrayError:
            if storage == "lazy":
                raise
            lazy = None  # compressed: readable whole only
        if lazy is not None and choose_storage(lazy.nbytes, storage) == "lazy":
            return lazy
    return MemoryDataset(load_npz(path))
