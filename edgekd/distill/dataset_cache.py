"""The teacher cache of a lazily read dataset: streamed through the teacher into disk shards.

For data held in memory the cache is one file (:mod:`edgekd.distill.teacher_cache`). For a
lazy dataset (an image cache, RadioML 2018 rows, a memory-mapped array) the frames are read
by DataLoader workers, shard by shard, in every view the run cycles through, and the logits go
straight into memory-mapped shards (:mod:`edgekd.distill.logit_shards`): RAM holds a batch,
whatever the number of frames, and a killed build resumes at the first unfinished shard.

View ``v`` of frame ``i`` is the view training shows in the epochs that use view ``v``: the
dataset draws its own augmentation (images) from (seed, v, i) when asked for key ``(i, v)``,
and the IQ views (``train.augment``: shift, phase) are applied to the batch by frame index.

The cache key covers the teacher, the data and the views. A lazy source is identified by its
files' paths, sizes and modification times and by the rows, labels and splits read from them,
not by hashing its bytes (that would read 21 GB per run for RadioML 2018).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.data.artifact import labels_digest
from edgekd.data.batches import keyed_loader, model_input, resolve_workers
from edgekd.data.worker_errors import carried_errors
from edgekd.distill.augment import augment_frames
from edgekd.distill.checks import eval_mode, model_device
from edgekd.distill.config import AugmentConfig, KDConfig
from edgekd.distill.logit_shards import build_sharded_logits, open_sharded_logits, sharded_cache_dir
from edgekd.distill.teacher_cache import (
    CachedLogits,
    CacheUnusable,
    _check_finite,
    _concat,
    cache_key,
    compress_logits,
    prune_caches,
    teacher_digest,
)

Log = Callable[[str], None]


def _file_identity(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _source_files(dataset: Any) -> list[dict[str, Any]]:
    """The identity of every file the dataset reads: its file, the arrays of its folder, or
    (an image folder read file by file) each image with the decoding settings."""
    parts = getattr(dataset, "parts", None)
    if parts is not None:  # labelled + unlabelled frames (edgekd.data.pooled): each part's files and rows
        return [{"files": _source_files(part), "rows": labels_digest(part)} for part in parts]
    path = getattr(dataset, "path", None)
    if path is not None:
        path = Path(path)
        inside = sorted(path.glob("*.npy")) if path.is_dir() else [path]
        return [_file_identity(p) for p in inside]
    if hasattr(dataset, "files") and hasattr(dataset, "draft"):  # a LazyImageFolder
        from edgekd.data.lazy_images import cache_key

        return [{"images": cache_key(dataset, dataset.channels)}]
    return []


def lazy_data_digest(dataset: Any) -> str:
    """sha256 identifying a lazy dataset's frames (see the module doc): its kind, its files'
    identity, the rows it reads, its labels and splits, and the image settings."""
    files = _source_files(dataset)
    transform = getattr(dataset, "transform", None)
    spec = {
        "kind": type(dataset).__qualname__,
        "files": files,
        "shape": list(dataset.input_shape),
        "transform": repr(transform) if transform is not None else None,
        "augment": repr(getattr(dataset, "augment", None)),
        "augment_seed": getattr(dataset, "augment_seed", 0),
        "labels": labels_digest(dataset),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _view_keys(dataset: Any, start: int, stop: int, view: int) -> list:
    rows = list(range(start, stop))
    return [(i, view) for i in rows] if getattr(dataset, "augment", None) is not None else rows


class _TeacherPass:
    """``compute(view, start, stop)`` for the shard writer: the teacher's fp32 logits of frames
    [start, stop) in ``view``, read by DataLoader workers a batch at a time."""

    def __init__(self, teacher, dataset, augment: AugmentConfig, batch_size: int, workers: int, name: str):
        self.teacher, self.dataset, self.augment = teacher, dataset, augment
        self.batch_size, self.workers, self.name = batch_size, workers, name

    @torch.no_grad()
    def __call__(self, view: int, start: int, stop: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        keys = _view_keys(self.dataset, start, stop, view)
        batches = [keys[s : s + self.batch_size] for s in range(0, len(keys), self.batch_size)]
        loader = keyed_loader(self.dataset, batches, self.workers)
        device = model_device(self.teacher)
        with eval_mode(self.teacher), carried_errors():
            for x, _y, idx in loader:
                xb = augment_frames(model_input(x, self.dataset, device), idx.numpy(), view, self.augment)
                logits = torch.as_tensor(self.teacher(xb)).float().cpu()
                _check_finite(logits, idx, view, self.name)
                yield idx.numpy(), logits


def dataset_logits_cache(
    teacher: Any,
    dataset: Any,
    augment: AugmentConfig,
    kd: KDConfig,
    *,
    cache_dir: Path | None,
    batch_size: int,
    workers: int | str | None = "auto",
    log: Log | None = None,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    teacher_name: str = "teacher",
):
    """Teacher logits of every frame of the lazy ``dataset`` in every view: a
    :class:`~edgekd.distill.logit_shards.ShardedLogits` in ``cache_dir`` (reused when it is
    complete and intact, finished when a build was interrupted), or, with no ``cache_dir`` or a
    teacher nothing identifies, a :class:`~edgekd.distill.teacher_cache.CachedLogits` in memory.

    Only the main process writes; the others wait at ``barrier``, then open the shards.
    """
    say = log if (log is not None and is_main) else (lambda _msg: None)
    compute = _TeacherPass(
        teacher, dataset, augment, batch_size, resolve_workers(workers, dataset), teacher_name
    )
    views, frames, classes = augment.view_count, len(dataset), dataset.num_classes
    t_digest = teacher_digest(teacher) if cache_dir is not None else None
    if t_digest is None:
        if cache_dir is not None:
            say("teacher cache: this teacher has no file or weights to identify it; keeping logits in memory")
        return _in_memory(compute, views, frames, kd)
    key = cache_key(t_digest, lazy_data_digest(dataset), augment, kd.cache_storage, kd.cache_topk)
    folder = sharded_cache_dir(cache_dir, key)
    shape = {"views": views, "frames": frames, "num_classes": classes}
    if is_main:
        try:
            cached = open_sharded_logits(folder, key, views, frames, classes)
        except CacheUnusable as exc:
            say(f"teacher cache: {folder} is unusable ({exc}); building it again")
            cached = None
        if cached is not None:
            say(f"teacher cache: reusing {folder} ({views} view(s) x {frames} frames, {kd.cache_storage})")
        else:
            say(f"teacher cache: computing {views} view(s) x {frames} frames ({kd.cache_storage}), {folder}")
            cached = build_sharded_logits(
                folder, key, **shape, storage=kd.cache_storage, topk=kd.cache_topk, compute=compute, say=say
            )
            if kd.cache_max_gib is not None:
                for old in prune_caches(
                    Path(cache_dir), keep=folder, max_bytes=int(kd.cache_max_gib * 2**30)
                ):
                    say(f"teacher cache: deleted {old.name}, least recently used (cache_max_gib)")
        barrier()
        return cached
    barrier()  # rank 0 writes the shards while the others wait here
    cached = open_sharded_logits(folder, key, views, frames, classes, verify=False)
    return cached if cached is not None else _in_memory(compute, views, frames, kd)


def _in_memory(compute: _TeacherPass, views: int, frames: int, kd: KDConfig) -> CachedLogits:
    """Every view's logits compressed batch by batch into one in-memory cache."""
    parts = []
    for view in range(views):
        rows = []
        for idx, logits in compute(view, 0, frames):
            order = np.argsort(idx)  # the loader yields in order; sorting guards the assumption
            rows.append(compress_logits(logits[order][None], kd.cache_storage, kd.cache_topk))
        parts.append(_concat(rows, dim=1))
    return _concat(parts, dim=0)
