"""Batches of a map-style dataset, in order, for every pass that reads a whole split.

Validation, the teacher cache, the bench's accuracy, the quantize checks and calibration
all read a split from start to end. :func:`iter_batches` does it the same way for every
dataset of :mod:`edgekd.data.mapstyle`:

* a :class:`~edgekd.data.mapstyle.MemoryDataset` is sliced in this process (no workers, no
  copies beyond the batch): the fast path of the demo and the 1-D benchmarks;
* a lazy dataset (image files, an image cache, HDF5 rows, a memory-mapped array) is read
  batch by batch (:meth:`~edgekd.data.mapstyle.MapDataset.read_batch`: one read of the source
  per batch, no per-sample collation), by DataLoader workers or in this process
  (:func:`resolve_workers`), so RAM holds a few batches whatever the split's size.

A batch is ``(x, y, idx)``: ``x`` the samples as the dataset gives them (float32, or uint8
pixels for a raw image dataset), ``y`` int64 labels, ``idx`` int64 positions in the dataset.
:func:`model_input` turns ``x`` into what a network takes (uint8 pixels normalised on the
device, where they cross the bus at a quarter of their float32 size).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from edgekd.data.mapstyle import BatchReads, MapDataset, MemoryDataset
from edgekd.data.worker_errors import CarryErrors, carried_errors
from edgekd.errors import ConfigError

#: Most workers "auto" starts: beyond this a loader rarely feeds a step faster, and every
#: worker holds a copy of the dataset object and its open files.
MAX_AUTO_WORKERS = 8
#: The environment variable that sets what "auto" workers means.
WORKERS_ENV = "EDGEKD_NUM_WORKERS"
#: A memory-mapped array of at most this share of RAM (as float32) stays in the page cache
#: after its first epoch: a batch is then a memory copy, read in the training process.
PAGE_CACHE_FRACTION = 0.5


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask capped by a cgroup CPU quota."""
    from edgekd.runtime.threads import usable_cores

    return usable_cores()


def resolve_workers(workers: int | str | None, dataset: Any) -> int:
    """DataLoader worker processes for ``dataset``: an int as given (>= 0), or "auto"/None:
    0 for a dataset held in memory (slicing beats any worker), else the environment's
    ``EDGEKD_NUM_WORKERS`` when set (the test suite, which keeps workers out of its own
    process), else 0 for a memory-mapped array that fits the page cache
    (:func:`reads_from_page_cache`), else one per usable core (affinity and cgroup quota:
    :func:`available_cores`) up to :data:`MAX_AUTO_WORKERS`."""
    if workers not in (None, "auto"):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(
                f"num_workers must be 'auto' or an integer >= 0, got {workers!r}",
                hint="use 'auto', 0 (read in the training process) or a worker count",
            )
        return workers
    if in_memory(dataset):
        return 0
    override = os.environ.get(WORKERS_ENV, "").strip()
    if override:
        if not override.isdigit():
            raise ConfigError(
                f"{WORKERS_ENV}={override!r} is not a worker count", hint=f"set {WORKERS_ENV} to 0, 1, 2..."
            )
        return int(override)
    if reads_from_page_cache(dataset):
        return 0
    return min(MAX_AUTO_WORKERS, available_cores())


def reads_from_page_cache(dataset: Any) -> bool:
    """Whether ``dataset`` is a memory-mapped array (an npz or .npy folder:
    :class:`~edgekd.data.lazy_arrays.ArrayFileDataset`) small enough to stay in the page cache
    (:data:`PAGE_CACHE_FRACTION` of RAM as float32; 2 GiB where RAM is unknown).

    Reading a batch of it is then one memory copy of ~100 KB: a worker would spend more on
    passing the batch back than on reading it, and takes a core from the training thread
    (on 2 cores, KD trained at 0.83x of a hand-written loop with 2 workers, 0.99x reading
    in this process: docs/benchmarks.md). A larger map is read from disk: workers hide the
    reads' latency. A dataset that augments each sample keeps its workers (CPU work).
    """
    from edgekd.data.lazy_arrays import ArrayFileDataset

    if getattr(dataset, "augment", None) is not None:
        return False
    parts = getattr(dataset, "parts", None)  # labelled + unlabelled frames (edgekd.data.pooled)
    if parts is not None:
        return all(in_memory(p) or reads_from_page_cache(p) for p in parts) and _fits_page_cache(dataset)
    return isinstance(dataset, ArrayFileDataset) and _fits_page_cache(dataset)


def _fits_page_cache(dataset: Any) -> bool:
    from edgekd.data.validate import physical_memory

    total = physical_memory()
    budget = total * PAGE_CACHE_FRACTION if total else 2 << 30
    return dataset.nbytes <= budget


def in_memory(dataset: Any) -> bool:
    """Whether ``dataset``'s samples are arrays in this process (sliced, never read by workers)."""
    return isinstance(dataset, MemoryDataset) or not isinstance(dataset, MapDataset)


def memory_arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of data held in memory: an ArrayDataset's arrays, or those of a
    :class:`~edgekd.data.mapstyle.MemoryDataset` narrowed by ``take``/``subset`` (views when it
    spans the whole array in order, else one gathered copy)."""
    if not isinstance(dataset, MemoryDataset):
        return dataset.x, dataset.y
    rows, data = dataset.rows, dataset.data
    if len(rows) == len(data) and np.array_equal(rows, np.arange(len(data))):
        return data.x, dataset.y
    return data.x[rows], dataset.y


def _collate(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, idx = zip(*items, strict=True)
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.int64), torch.as_tensor(idx, dtype=torch.int64)


def _as_read(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The collate function of a :class:`~edgekd.data.mapstyle.BatchReads` loader: a batch
    arrives collated (a module-level function: a forkserver worker unpickles it)."""
    return batch


#: Runtimes whose thread pools do not survive a fork: once one is loaded in this process,
#: DataLoader workers start from a fresh forkserver process instead (a forked worker of a
#: process that ran OpenVINO or NNCF dies with SIGSEGV).
FORK_UNSAFE = ("openvino", "nncf", "onnxruntime", "tensorrt")


def start_method() -> str | None:
    """The multiprocessing start method for DataLoader workers: None (the platform's, fork on
    Linux: nothing to pickle or import again) until a fork-unsafe runtime is loaded here, then
    "forkserver" (workers import what they need and unpickle the dataset)."""
    if sys.platform.startswith("linux") and any(name in sys.modules for name in FORK_UNSAFE):
        return "forkserver"
    return None


def loader_options(workers: int, *, pin_memory: bool = False, batched: bool = False) -> dict[str, Any]:
    """DataLoader keyword arguments for ``workers`` processes; ``batched``: for a loader over
    :class:`~edgekd.data.mapstyle.BatchReads` (``batch_size=None``, batches of keys as its
    sampler), whose items are whole batches.

    Workers are forked where the platform allows (see :func:`start_method`): the dataset
    object is shared copy-on-write rather than pickled, and every lazy dataset reopens its
    files in the worker.

    Each loader gets a generator of its own: a DataLoader draws its workers' base seed from
    its generator every time it starts an iteration, and from torch's global generator
    without one, which would shift the dropout and initialisation draws of training by a
    number that depends on the worker count (our samples' randomness never uses it:
    :func:`edgekd.data.mapstyle.sample_seed`).
    """
    opts: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": _as_read if batched else _collate,
        "pin_memory": pin_memory,
        "generator": torch.Generator().manual_seed(0),
    }
    if workers:
        opts["prefetch_factor"] = 4
        opts["multiprocessing_context"] = start_method()
    return opts


def keyed_loader(dataset: Any, batch_sampler: Any, workers: int, *, pin_memory: bool = False) -> Any:
    """A DataLoader of batches ``(x, y, idx)`` of ``dataset``, one per list of keys that
    ``batch_sampler`` yields, each read as a whole (:class:`~edgekd.data.mapstyle.BatchReads`).
    Iterate it inside :func:`edgekd.data.worker_errors.carried_errors`: a bad file met in a
    worker is then the one-line error it would be in this process."""
    return torch.utils.data.DataLoader(
        CarryErrors(BatchReads(dataset)),
        sampler=batch_sampler,
        batch_size=None,
        **loader_options(workers, pin_memory=pin_memory, batched=True),
    )


def iter_batches(
    dataset: Any,
    batch_size: int,
    *,
    workers: int | str | None = "auto",
    indices: np.ndarray | None = None,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(x, y, idx)`` batches of ``dataset`` (its evaluation views) in order.

    Args:
        dataset: a map-style dataset, or an :class:`~edgekd.data.dataset.ArrayDataset`.
        batch_size: samples per batch (the last may be shorter).
        workers: DataLoader workers (:func:`resolve_workers`); in-memory data never uses any.
        indices: the positions to read (int [n], in the order given); None: all.
        pin_memory: page-locked batches, for an asynchronous copy to a GPU.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    order = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if in_memory(dataset):
        x_all, rows = _source_rows(dataset)
        y_all = dataset.y
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            # One gather per batch from the source array: a narrowed split is never copied whole.
            x = x_all[idx if rows is None else rows[idx]]
            yield (
                torch.from_numpy(np.ascontiguousarray(x)),
                torch.from_numpy(y_all[idx]),
                torch.from_numpy(idx),
            )
        return
    count = resolve_workers(workers, dataset)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]  # int64 arrays
    loader = keyed_loader(dataset, batches, count, pin_memory=pin_memory)
    with carried_errors():  # a bad file read in a worker is still one line naming it
        yield from loader


def _source_rows(dataset: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The array an in-memory dataset's samples live in, and the row of each sample in it
    (None: sample i is row i)."""
    if isinstance(dataset, MemoryDataset):
        return dataset.data.x, dataset.rows
    return dataset.x, None  # an ArrayDataset


def model_input(x: torch.Tensor, dataset: Any, device: torch.device | str) -> torch.Tensor:
    """A batch ``x`` of ``dataset`` as a network takes it, on ``device``: float32 samples are
    moved; raw uint8 image pixels are moved, then normalised there (the dataset's ``transform``)."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        from edgekd.data.lazy_images import normalize_batch

        return normalize_batch(x, dataset.transform)
    return x


def network_input_shape(dataset: Any) -> tuple[int, ...]:
    """The shape of one sample as the network sees it: a raw uint8 image dataset's [C, S, S]
    pixels become [3, S, S] after :func:`model_input`."""
    shape = tuple(dataset.input_shape)
    if getattr(dataset, "sample_dtype", np.float32) == np.uint8 and len(shape) == 3:
        return (3, *shape[1:])
    return shape


def network_arrays(
    dataset: Any, indices: np.ndarray | None = None, *, batch_size: int = 64, workers: int | str | None = 0
) -> Any:
    """Samples ``indices`` (None: all) of ``dataset`` as an in-memory
    :class:`~edgekd.data.dataset.ArrayDataset` of network inputs (float32, raw pixels
    normalised): for the few hundred frames of a parity check or a calibration set, never a
    whole large split (:func:`whole_network_arrays` checks the size first). ``workers``: as
    for :func:`iter_batches` (0, the default: read in this process)."""
    from edgekd.data.dataset import ArrayDataset

    order = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if in_memory(dataset):
        x_all, rows = _source_rows(dataset)
        x = np.ascontiguousarray(x_all[order if rows is None else rows[order]], dtype=np.float32)
        y = dataset.y[order]
    else:
        x = np.empty((len(order), *network_input_shape(dataset)), dtype=np.float32)
        y = np.empty(len(order), dtype=np.int64)
        done = 0
        for xb, yb, _ in iter_batches(dataset, batch_size, indices=order, workers=workers):
            x[done : done + len(xb)] = model_input(xb, dataset, "cpu").numpy()
            y[done : done + len(yb)] = yb.numpy()
            done += len(xb)
    snr = None if dataset.snr is None else dataset.snr[order]
    split = None if dataset.split is None else dataset.split[order]
    return ArrayDataset(
        x=x,
        y=y,
        class_names=list(dataset.class_names),
        snr=snr,
        split=split,
        source=getattr(dataset, "source", ""),
    )


def network_batches(
    dataset: Any, batch_size: int, *, workers: int | str | None = "auto", indices: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`iter_batches` as numpy network inputs on the CPU, for a runtime that takes arrays
    (ONNX Runtime, OpenVINO): ``x`` float32 [B, *network_input_shape], ``y`` and ``idx`` int64 [B]."""
    for x, y, idx in iter_batches(dataset, batch_size, workers=workers, indices=indices):
        yield model_input(x, dataset, "cpu").numpy(), y.numpy(), idx.numpy()


def whole_network_arrays(dataset: Any, purpose: str, *, workers: int | str | None = "auto") -> Any:
    """Every sample of ``dataset`` as an in-memory ArrayDataset of network inputs, for a
    ``purpose`` (e.g. "a remote bench") that needs the frames as one array.

    Raises InputFileError naming the data when a lazy dataset's float32 network inputs would
    take more than the in-memory budget (:func:`edgekd.data.storage.choose_storage`).
    """
    if not isinstance(dataset, MapDataset):
        return dataset  # already an ArrayDataset
    if isinstance(dataset, MemoryDataset) and np.array_equal(dataset.rows, np.arange(len(dataset.data))):
        return dataset.data  # the whole array it wraps: no copy
    if not in_memory(dataset):
        from edgekd.data.storage import choose_storage
        from edgekd.errors import InputFileError

        nbytes = 4 * len(dataset) * int(np.prod(network_input_shape(dataset)))
        if choose_storage(nbytes) != "memory":
            raise InputFileError(
                f"{purpose} needs the {len(dataset)} frames of {getattr(dataset, 'source', 'the data')} in "
                f"memory ({nbytes / 2**30:.1f} GiB as float32), more than fits here",
                hint="use a smaller split or subset of the data, or a machine with more memory",
            )
    return network_arrays(dataset, workers=workers)
