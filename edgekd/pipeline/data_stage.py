"""The data stage: the frames every later stage reads, checked and written once.

In memory (``data.npz``, or an npz source used in place) or as a data index read lazily
(``data.json``, with a uint8 pixel cache for an image folder): see :func:`stage_data`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.artifacts import commits_on_success, require_file
from edgekd.config import to_dict
from edgekd.data.artifact import (
    IMAGE_CACHE_NAME,
    check_training_set,
    open_data,
    open_lazy_source,
    prepare_images,
    write_index,
)
from edgekd.data.batches import resolve_workers
from edgekd.data.sources import LAZY_SOURCES, DataSpec, describe_source, load_dataset
from edgekd.data.storage import choose_storage
from edgekd.distill.distributed import barrier, is_main_process
from edgekd.errors import InputFileError
from edgekd.pipeline.checks import DataCheck, Log, _quiet, run_checks


@commits_on_success
def stage_data(
    section: DataSpec,
    out_dir: Path,
    resolve: Callable[[str], Path],
    log: Log = _quiet,
    *,
    checks: Sequence[DataCheck] = (),
    workers: int | str = "auto",
) -> Path:
    """Prepare the data every later stage reads; returns the data artifact (``open_data`` opens it).

    * data held in memory (``data.storage``, :func:`stores_lazily`): the frames go to
      ``out_dir/data.npz`` (an npz source is used in place, memory-mapped when it is large);
    * lazy data: ``out_dir/data.json``, a data index naming the source; an image folder is
      first decoded once, by ``workers`` DataLoader workers, into the uint8 pixel cache
      ``out_dir/data-images.npy`` (reused while the images and settings are unchanged).

    ``checks`` run on the data before anything is written (e.g. that it fits the teacher
    checkpoint: :meth:`edgekd.models.fit.ModelInput.check`); each names the source.
    Under torchrun only rank 0 writes; the other ranks wait, then read its files.
    """
    source = resolve(section.path) if section.path else Path()
    if section.source == "npz" and not section.test_path:
        path = require_file(source, "dataset", hint="set data.path to an existing .npz")
        dataset = check_training_set(open_data(path, storage=section.storage), section, path)
        run_checks(checks, dataset, describe_source(section, path))
        log(f"data: {len(dataset)} frames of {list(dataset.input_shape)} from {path}")
        if section.storage == "auto":
            return path  # used in place: later stages apply the same rule by size
        # An index keeps the override for every later stage (and --data) that opens the data.
        index = out_dir / "data.json"
        if is_main_process():
            write_index(index, section, path, dataset, None)
        barrier()
        return index
    lazy, opened = stores_lazily(section, source)  # the same answer on every rank
    path = out_dir / "data.json" if lazy else out_dir / "data.npz"
    if not is_main_process():
        barrier()  # rank 0 writes the data artifact
        return path
    if lazy:
        _write_lazy_data(section, source, path, log, checks=checks, workers=workers, opened=opened)
    else:
        _write_data_npz(section, source, path, resolve, log, checks=checks)
    barrier()
    return path


def stores_lazily(section: DataSpec, source: Path) -> tuple[bool, Any]:
    """Whether the data stage reads ``section``'s data lazily (``data.storage``; "auto": an image
    folder always, as a uint8 pixel cache a twelfth of float32's size; RadioML 2018 when its
    frames would take more than a quarter of RAM; the other sources never), and the lazy
    dataset when deciding opened it (else None), so that it is not read twice."""
    if section.test_path:
        return False, None  # two files joined in memory (DataSpec.validate refuses storage: lazy)
    if section.storage != "auto":
        return section.storage == "lazy", None
    if section.source == "imagefolder":
        return True, None
    if section.source not in LAZY_SOURCES or not source.exists():
        return False, None  # a missing path: the in-memory loader names it
    dataset = open_lazy_source(section, source)
    return choose_storage(dataset.nbytes) == "lazy", dataset


def _write_data_npz(
    section: DataSpec,
    source: Path,
    path: Path,
    resolve: Callable[[str], Path],
    log: Log,
    *,
    checks: Sequence[DataCheck],
) -> None:
    dataset = load_dataset(section, resolve)
    run_checks(checks, dataset, describe_source(section, source))
    # A file source is a parent artifact; a folder of images is not hashed as one.
    parents = [source] if section.source in ("rml2016", "rml2018", "npz") and section.path else None
    if parents and section.test_path:
        parents.append(resolve(section.test_path))
    dataset.save_npz(path, config=to_dict(section), parents=parents)
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} frames of {list(dataset.input_shape)} ({section.source}), "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )


def _write_lazy_data(
    section: DataSpec,
    source: Path,
    path: Path,
    log: Log,
    *,
    checks: Sequence[DataCheck],
    workers: int | str,
    opened: Any = None,
) -> None:
    if not source.exists():
        raise InputFileError(f"data.path {source} does not exist", hint="check data.path")
    dataset = opened if opened is not None else open_lazy_source(section, source)
    run_checks(checks, dataset, describe_source(section, source))
    cache = None
    if section.source == "imagefolder":
        count = resolve_workers(workers, dataset)
        log(f"data: decoding {len(dataset)} images of {source} into {IMAGE_CACHE_NAME} ({count} workers)")
        dataset = prepare_images(dataset, path.parent, count, say=log)
        cache = IMAGE_CACHE_NAME
    write_index(path, section, source, dataset, cache)
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} frames of {list(dataset.input_shape)} ({section.source}, read lazily), "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )


__all__ = ["stage_data", "stores_lazily"]
