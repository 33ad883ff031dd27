"""On-disk cache of teacher logits: computed once, reused by every epoch, run and student.

The cache holds the frozen teacher's logits for every training frame in every augmentation
view (``train.augment.views``; one view, the frame itself, without augmentation). View ``v``
of frame ``i`` is redrawn from (augment seed, i, v) by ``edgekd.distill.augment``, so in
epoch ``e`` the student sees exactly the view whose logits the cache holds.

Storage (``distill.kd.cache_storage``):

* ``fp16``: all K logits in half precision, [V, N, K] (relative error <= 2^-11).
* ``topk``: the ``cache_topk`` largest logits (fp16) with their classes (int16, or int32
  beyond 32,767 classes), and one fp32 *fill* logit per frame that every other class gets:
  ``fill = logsumexp(other logits) - log(K - k)``. At temperature 1 the reconstructed softmax
  keeps the top-k probabilities and spreads the remaining probability mass uniformly over the
  other classes (exact up to fp16 rounding); at other temperatures it is an approximation.

The file ``<cache_dir>/teacher-logits-<key>.pt`` is keyed by the sha256 of the teacher (its
weights and structure, or its ONNX file), the training frames, the augmentation settings and
the storage format: change any of them and a new cache is built; keep them and several
students (and runs) share it. It is written atomically with a manifest beside it, loads with
``torch.load(weights_only=True)``, and carries the sha256 of its tensors: a truncated,
corrupt or foreign file is reported and rebuilt, never trusted.

A shared folder would grow by one file per teacher, dataset and augmentation setting: after
writing a new cache, the least recently used others (reuse refreshes a file's time) are
deleted until the folder holds at most ``distill.kd.cache_max_gib``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.artifacts import atomic_path, durable, manifest_path, sha256_file, write_manifest
from edgekd.config import to_dict
from edgekd.distill.augment import augment_frames
from edgekd.distill.checks import eval_mode, model_device
from edgekd.distill.config import AugmentConfig, KDConfig
from edgekd.errors import ConfigError, InputFileError

CACHE_FORMAT = "edgekd.teacher-cache/1"
FP16_MAX = float(torch.finfo(torch.float16).max)

Log = Callable[[str], None]


@dataclasses.dataclass
class CachedLogits:
    """Teacher logits of N training frames in V views, as stored (see the module docstring)."""

    values: torch.Tensor  # fp16 [V, N, K] (fp16 storage) or [V, N, k] (topk), on CPU
    indices: torch.Tensor | None  # int16/int32 [V, N, k]: the class of each kept logit (topk)
    fill: torch.Tensor | None  # fp32 [V, N]: the logit every class outside the top k gets (topk)
    num_classes: int

    @property
    def storage(self) -> str:
        return "fp16" if self.indices is None else "topk"

    @property
    def views(self) -> int:
        return self.values.shape[0]

    @property
    def frames(self) -> int:
        return self.values.shape[1]

    def lookup(self, idx: torch.Tensor, view: int, device: torch.device) -> torch.Tensor:
        """fp32 logits [B, K] of frames ``idx`` [B] (CPU int64) in ``view``, on ``device``.

        The per-step cost: one row gather and a dequantisation (plus a scatter for top-k).
        """
        values = self.values[view][idx].to(device, non_blocking=True).float()
        if self.indices is None:
            return values
        classes = self.indices[view][idx].to(device, non_blocking=True).long()
        fill = self.fill[view][idx].to(device, non_blocking=True)  # type: ignore[index]
        return fill[:, None].repeat(1, self.num_classes).scatter_(1, classes, values)

    def dense(self, view: int = 0) -> torch.Tensor:
        """fp32 logits [N, K] of every frame in ``view`` (tests, inspection)."""
        return self.lookup(torch.arange(self.frames), view, torch.device("cpu"))

    def payload_sha256(self) -> str:
        digest = hashlib.sha256()
        for tensor in (self.values, self.indices, self.fill):
            if tensor is not None:
                digest.update(_tensor_bytes(tensor))
        return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    # Raw bytes of any dtype (bf16 has no numpy twin): reinterpret as uint8.
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def compress_logits(logits: torch.Tensor, storage: str, topk: int) -> CachedLogits:
    """fp32 logits [V, N, K] -> the stored form; raises ConfigError on values it cannot keep."""
    k_classes = logits.shape[-1]
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=-1).sum())
        raise ConfigError(
            f"the teacher gives NaN or infinite logits for {bad} training frame(s)",
            hint="check the teacher checkpoint and the data",
        )
    if storage == "fp16":
        _check_fp16_range(logits)
        return CachedLogits(logits.half(), None, None, k_classes)
    if topk >= k_classes:
        raise ConfigError(
            f"distill.kd.cache_topk {topk} keeps every one of the {k_classes} classes",
            hint=f"use cache_storage: fp16, or cache_topk below {k_classes}",
        )
    values, classes = logits.topk(topk, dim=-1)  # sorted, largest first
    others = logits.scatter(-1, classes, float("-inf"))
    fill = torch.logsumexp(others, dim=-1) - math.log(k_classes - topk)
    fill = torch.minimum(fill, values[..., -1])  # by construction; guards float rounding
    _check_fp16_range(values)
    index_dtype = torch.int16 if k_classes <= torch.iinfo(torch.int16).max else torch.int32
    return CachedLogits(values.half(), classes.to(index_dtype), fill.float(), k_classes)


def _check_fp16_range(logits: torch.Tensor) -> None:
    if logits.numel() and float(logits.abs().max()) > FP16_MAX:
        raise ConfigError(
            f"the teacher's logits reach {float(logits.abs().max()):.3g}, beyond fp16's range "
            f"({FP16_MAX:g}), so the teacher cache cannot store them",
            hint="set distill.kd.cache_teacher: false (the teacher then runs per batch)",
        )


def teacher_digest(teacher: Any) -> str | None:
    """sha256 identifying the teacher: its ONNX file, or its structure and weights; None if unknown."""
    path = getattr(teacher, "path", None)
    if path is not None and Path(path).is_file():
        return "file:" + sha256_file(path)
    if not isinstance(teacher, nn.Module):
        return None  # a black-box callable: nothing identifies it across runs
    digest = hashlib.sha256(f"{type(teacher).__module__}.{type(teacher).__qualname__}".encode())
    digest.update(repr(teacher).encode())  # structure, including settings without weights
    for name, tensor in teacher.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    return "state:" + digest.hexdigest()


def data_digest(x: np.ndarray) -> str:
    """sha256 of the training frames (values, shape, dtype and order: rows are cache indices)."""
    digest = hashlib.sha256(f"{x.dtype}:{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).data)
    return digest.hexdigest()


def cache_key(teacher: str, data: str, augment: AugmentConfig, storage: str, topk: int) -> str:
    """The cache key: sha256 of everything the stored logits depend on."""
    spec = {
        "format": CACHE_FORMAT,
        "teacher": teacher,
        "data": data,
        "augment": augment.spec() if augment.enabled else None,
        "views": augment.view_count,
        "storage": storage,
        "topk": topk if storage == "topk" else None,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"teacher-logits-{key[:24]}.pt"


@torch.no_grad()
def compute_cached_logits(
    teacher: Any,
    x: np.ndarray,
    augment: AugmentConfig,
    storage: str,
    topk: int,
    batch_size: int = 512,
    teacher_name: str = "teacher",
) -> CachedLogits:
    """Run ``teacher`` (eval mode, fp32) on every view of every frame of ``x`` [N, ...].

    NaN or infinite logits raise InputFileError naming ``teacher_name`` and the first frame.
    """
    device = model_device(teacher)
    frames = torch.from_numpy(np.ascontiguousarray(x))
    views: list[CachedLogits] = []
    with eval_mode(teacher):
        for view in range(augment.view_count):
            parts = []
            for idx in torch.split(torch.arange(len(frames)), batch_size):
                xb = augment_frames(frames[idx].to(device), idx.numpy(), view, augment)
                logits = torch.as_tensor(teacher(xb)).float().cpu()
                _check_finite(logits, idx, view, teacher_name)
                parts.append(compress_logits(logits[None], storage, topk))  # row-wise: chunk by chunk
            views.append(_concat(parts, dim=1))
    return _concat(views, dim=0)


def _check_finite(logits: torch.Tensor, idx: torch.Tensor, view: int, teacher_name: str) -> None:
    bad = ~torch.isfinite(logits).reshape(len(logits), -1).all(dim=1)
    if bool(bad.any()):
        raise InputFileError(
            f"the {teacher_name} gives NaN or infinite logits for {int(bad.sum())} training frame(s) "
            f"(first: frame {int(idx[bad][0])}, augmentation view {view}) while its logits are cached",
            hint="check the teacher's weights and the data",
        )


def _concat(parts: list[CachedLogits], dim: int) -> CachedLogits:
    def cat(name: str) -> torch.Tensor | None:
        tensors = [getattr(p, name) for p in parts]
        return None if tensors[0] is None else torch.cat(tensors, dim=dim)

    return CachedLogits(cat("values"), cat("indices"), cat("fill"), parts[0].num_classes)  # type: ignore[arg-type]


class CacheUnusable(Exception):
    """A cache file that must not be trusted; the message says why."""


def save_cache(path: Path, key: str, cached: CachedLogits, config: dict[str, Any], seconds: float) -> None:
    """Write the cache atomically, then its manifest. Durable: the teacher's logits stay valid
    for every later run, whatever becomes of the command that computed them."""
    payload = {
        "format": CACHE_FORMAT,
        "key": key,
        "num_classes": cached.num_classes,
        "values": cached.values,
        "indices": cached.indices,
        "fill": cached.fill,
        "payload_sha256": cached.payload_sha256(),
    }
    metrics = {"views": cached.views, "frames": cached.frames, "build_seconds": round(seconds, 3)}
    with durable():
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        write_manifest(path, "teacher-cache", config={**config, "key": key}, metrics=metrics)


def load_cache(path: Path, key: str, views: int, frames: int, num_classes: int) -> CachedLogits:
    """The cache in ``path``, checked against what this run expects; CacheUnusable otherwise."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CacheUnusable(f"unreadable ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise CacheUnusable("not an edgekd teacher cache")
    if payload.get("key") != key:
        raise CacheUnusable("its key does not match the teacher, data and settings of this run")
    values, indices, fill = payload.get("values"), payload.get("indices"), payload.get("fill")
    if (
        not isinstance(values, torch.Tensor)
        or values.dtype != torch.float16
        or tuple(values.shape[:2]) != (views, frames)
        or payload.get("num_classes") != num_classes
    ):
        raise CacheUnusable(f"its logits are not fp16 [{views}, {frames}, ...] for {num_classes} classes")
    if indices is None:
        if fill is not None or values.shape[2] != num_classes:
            raise CacheUnusable("its fp16 logits have the wrong shape")
    elif (
        not isinstance(indices, torch.Tensor)
        or not isinstance(fill, torch.Tensor)
        or indices.dtype not in (torch.int16, torch.int32)
        or indices.shape != values.shape
        or tuple(fill.shape) != (views, frames)
        or fill.dtype != torch.float32
    ):
        raise CacheUnusable("its top-k classes or fill logits have the wrong shape or type")
    cached = CachedLogits(values, indices, fill, num_classes)
    if cached.payload_sha256() != payload.get("payload_sha256"):
        raise CacheUnusable("its contents do not match their recorded sha256 (corrupt)")
    return cached


def teacher_logits_cache(
    teacher: Any,
    x: np.ndarray,
    num_classes: int,
    augment: AugmentConfig,
    kd: KDConfig,
    *,
    cache_dir: Path | None,
    batch_size: int = 512,
    log: Log | None = None,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    teacher_name: str = "teacher",
) -> CachedLogits:
    """Teacher logits of every training frame and view: from ``cache_dir`` when valid, else computed.

    Only the main process (rank 0 under torchrun) writes the file; the other ranks wait at
    ``barrier`` and then read it (each computes its own copy when there is no ``cache_dir``).
    """
    say = log if (log is not None and is_main) else (lambda _msg: None)
    t_digest = teacher_digest(teacher) if cache_dir is not None else None
    if cache_dir is not None and t_digest is None:
        say("teacher cache: this teacher has no file or weights to identify it; keeping logits in memory")
    path, key = None, None
    if t_digest is not None:
        key = cache_key(t_digest, data_digest(x), augment, kd.cache_storage, kd.cache_topk)
        path = cache_file(Path(cache_dir), key)  # type: ignore[arg-type]
    expected = (augment.view_count, len(x), num_classes)
    if is_main and path is not None and key is not None:
        cached = _load_or_none(path, key, expected, say)
        if cached is None:
            cached, seconds = _build(teacher, x, augment, kd, batch_size, say, teacher_name)
            config = {"augment": to_dict(augment), "storage": kd.cache_storage, "topk": kd.cache_topk}
            save_cache(path, key, cached, config, seconds)
            say(f"teacher cache: wrote {path} in {seconds:.1f}s")
            if kd.cache_max_gib is not None:
                for old in prune_caches(path.parent, keep=path, max_bytes=int(kd.cache_max_gib * 2**30)):
                    say(f"teacher cache: deleted {old.name}, least recently used (cache_max_gib)")
        barrier()
        return cached
    barrier()  # rank 0 writes the file while the others wait here
    if path is not None and key is not None and path.is_file():
        try:
            return load_cache(path, key, *expected)
        except CacheUnusable:
            pass  # rank 0 reported it; compute this rank's own copy
    return _build(teacher, x, augment, kd, batch_size, say, teacher_name)[0]


def _cache_entry(path: Path) -> tuple[float, Path, int] | None:
    """(last use, path, bytes) of a cache file, or of a sharded cache folder (its index's time,
    the sum of its files); None for one deleted meanwhile by another run sharing the folder."""
    try:
        if path.is_dir():
            used = (path / "index.json").stat().st_mtime  # refreshed by every reuse
            return used, path, sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime, path, stat.st_size


def prune_caches(folder: Path, *, keep: Path, max_bytes: int) -> list[Path]:
    """Delete the least recently used teacher caches in ``folder`` (single files with their
    manifests, and finished sharded folders, :mod:`edgekd.distill.logit_shards`) other than
    ``keep`` until the caches there take at most ``max_bytes``; returns what was deleted.
    A sharded folder still being built (no ``index.json``) is left alone."""
    found = [*folder.glob("teacher-logits-*.pt"), *(p for p in folder.glob("teacher-logits-*") if p.is_dir())]
    entries = [entry for entry in map(_cache_entry, found) if entry is not None]
    total = sum(size for _, _, size in entries)
    deleted = []
    for _, path, size in sorted(entries):  # oldest first
        if total <= max_bytes:
            break
        if path == keep:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            for doomed in (path, manifest_path(path)):
                doomed.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


def _load_or_none(path: Path, key: str, expected: tuple[int, int, int], say: Log) -> CachedLogits | None:
    if not path.is_file():
        return None
    try:
        cached = load_cache(path, key, *expected)
    except CacheUnusable as exc:
        say(f"teacher cache: {path} is unusable ({exc}); rebuilding it")
        return None
    with contextlib.suppress(OSError):  # a read-only folder: reuse still works, pruning sees it as old
        os.utime(path)  # the file's time says when it was last used, for prune_caches
    say(f"teacher cache: reusing {path} ({cached.views} view(s) x {cached.frames} frames, {cached.storage})")
    return cached


def _build(
    teacher: Any,
    x: np.ndarray,
    augment: AugmentConfig,
    kd: KDConfig,
    batch_size: int,
    say: Log,
    teacher_name: str = "teacher",
) -> tuple[CachedLogits, float]:
    start = time.perf_counter()
    say(f"teacher cache: computing {augment.view_count} view(s) x {len(x)} frames ({kd.cache_storage})")
    logits = compute_cached_logits(
        teacher, x, augment, kd.cache_storage, kd.cache_topk, batch_size, teacher_name=teacher_name
    )
    return logits, time.perf_counter() - start
