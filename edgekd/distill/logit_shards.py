"""Teacher logits on disk at any size: fixed-size memory-mapped shards, written while streaming.

The single-file cache of :mod:`edgekd.distill.teacher_cache` holds every logit in RAM. Here the
same stored form (``fp16`` logits, or ``topk`` logits, classes and fill, see
:func:`edgekd.distill.teacher_cache.compress_logits`) goes into one folder of shards:

    <cache_dir>/teacher-logits-<key[:24]>/
        shard-<view>-<start>.values.npy    fp16 [n, K] (fp16) or [n, k] (topk)
        shard-<view>-<start>.indices.npy   int16/int32 [n, k] (topk only)
        shard-<view>-<start>.fill.npy      fp32 [n] (topk only)
        progress.json                      the finished shards (while building)
        index.json (+ index.json.json)     everything, with each file's sha256: the cache is complete

A shard holds frames [start, start + shard_frames) of one view. :func:`build_sharded_logits`
asks ``compute`` for one shard's frames at a time and writes each batch straight into the
shard's memory map: RAM holds one batch, however many frames there are. A shard is written
under a temporary name, flushed, fsynced and renamed; its sha256 then goes into
``progress.json`` (rewritten atomically). A killed build resumes at the shards not recorded
there, once the recorded ones match their sha256 (one that does not is built again).
``index.json``, written last, marks the cache complete.

:class:`ShardedLogits` reads a finished folder with :class:`~edgekd.distill.teacher_cache.CachedLogits`'s
API (``lookup``, ``dense``, ``storage``, ``views``, ``frames``, ``num_classes``): a batch's rows
are gathered from the memory maps, so only the pages touched are read (file pages, which the
kernel can drop again), and it pickles without them: each DataLoader worker opens its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.artifacts import atomic_path, atomic_write_json, durable, ensure_dir, sha256_file, write_manifest
from edgekd.distill.teacher_cache import CacheUnusable, Log, compress_logits
from edgekd.errors import ConfigError

SHARD_FORMAT = "edgekd.teacher-shards/1"
PROGRESS_FORMAT = "edgekd.teacher-shards-progress/1"
INDEX_FILE, PROGRESS_FILE, LOCK_FILE = "index.json", "progress.json", ".lock"
MANIFEST_KIND = "teacher-shards"
DEFAULT_SHARD_FRAMES = 65_536

# compute(view, start, stop) yields (frame indices int64 [b] in [start, stop), fp32 logits [b, K]).
Compute = Callable[[int, int, int], Iterable[tuple[np.ndarray, torch.Tensor]]]


class ShardWriteError(RuntimeError):
    """``compute`` gave rows outside its range, twice, or not at all: a bug in the caller."""


def sharded_cache_dir(cache_dir: str | os.PathLike[str], key: str) -> Path:
    """The folder of the sharded cache with ``key`` (see :func:`edgekd.distill.teacher_cache.cache_key`)."""
    return Path(cache_dir) / f"teacher-logits-{key[:24]}"


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What a cache folder holds; ``topk`` is 0 for fp16 storage."""

    key: str
    views: int
    frames: int
    num_classes: int
    storage: str
    topk: int
    shard_frames: int

    def arrays(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Each stored array: (dtype, shape of one row)."""
        half, k = np.dtype(np.float16), (self.topk,)
        if self.storage == "fp16":
            return {"values": (half, (self.num_classes,))}
        index = np.dtype(np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int32)
        return {"values": (half, k), "indices": (index, k), "fill": (np.dtype(np.float32), ())}

    def ranges(self) -> Iterator[tuple[int, int, int]]:
        """(view, start, stop) of every shard, view by view."""
        for view in range(self.views):
            for start in range(0, self.frames, self.shard_frames):
                yield view, start, min(start + self.shard_frames, self.frames)

    def header(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["topk"] = self.topk or None
        arrays = {name: [dtype.name, list(row)] for name, (dtype, row) in self.arrays().items()}
        return {**fields, "arrays": arrays}


def _shard_name(view: int, start: int) -> str:
    return f"shard-{view}-{start:010d}"


class ShardedLogits:
    """Teacher logits of ``frames`` frames in ``views`` views, read from a finished shard folder.

    Made by :func:`open_sharded_logits` or :func:`build_sharded_logits`. Same reading API and
    values as :class:`~edgekd.distill.teacher_cache.CachedLogits`.
    """

    def __init__(self, folder: Path, spec: _Spec, shards: dict[str, dict[str, Any]]) -> None:
        self.folder = Path(folder)
        self._spec = spec
        self._layout = spec.arrays()
        where = {(r["view"], r["start"] // spec.shard_frames): r["files"] for r in shards.values()}
        self._files = {at: {a: f["file"] for a, f in files.items()} for at, files in where.items()}
        self.nbytes = sum(f["bytes"] for r in shards.values() for f in r["files"].values())
        self._maps: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._pid = -1

    key = property(lambda self: self._spec.key)
    storage = property(lambda self: self._spec.storage)
    views = property(lambda self: self._spec.views)
    frames = property(lambda self: self._spec.frames)
    num_classes = property(lambda self: self._spec.num_classes)
    topk = property(lambda self: self._spec.topk)
    shard_frames = property(lambda self: self._spec.shard_frames)

    def __repr__(self) -> str:
        return f"ShardedLogits({self.folder}, {self.views} view(s) x {self.frames} frames, {self.storage})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"], state["_pid"] = {}, -1  # memory maps are reopened in each process, never pickled
        return state

    def _shard(self, view: int, shard: int) -> dict[str, np.ndarray]:
        """The arrays of one shard, memory-mapped (opened once per process)."""
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        arrays = self._maps.get((view, shard))
        if arrays is None:
            rows = min(self.shard_frames, self.frames - shard * self.shard_frames)
            arrays = {
                name: _map(self.folder / self._files[view, shard][name], dtype, (rows, *row))
                for name, (dtype, row) in self._layout.items()
            }
            self._maps[view, shard] = arrays
        return arrays

    def gather(self, idx: np.ndarray, view: int) -> dict[str, np.ndarray]:
        """The stored rows of frames ``idx`` (int64 [B], any order, repeats, negatives from the
        end) in ``view``: {"values": fp16 [B, K or k], and for topk "indices" [B, k], "fill" fp32 [B]}."""
        if not -self.views <= view < self.views:
            raise IndexError(f"view {view} out of range for {self.views} view(s) of {self.folder}")
        rows = np.asarray(idx, dtype=np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + self.frames, rows)
        if rows.size and (rows.min() < 0 or rows.max() >= self.frames):
            raise IndexError(f"frame index out of range for {self.frames} frames of {self.folder}")
        # Sorted, each shard's rows are one run (read in file order): one fancy-indexing read per
        # shard and array, straight into a slice of the result, then one scatter to the caller's order.
        size = self.shard_frames
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        shard = rows // size
        cuts = [0, *(np.flatnonzero(shard[1:] != shard[:-1]) + 1).tolist(), rows.size]
        got = {name: np.empty((rows.size, *row), dtype) for name, (dtype, row) in self._layout.items()}
        for lo, hi in itertools.pairwise(cuts):
            s = int(shard[lo])
            local = rows[lo:hi] - s * size
            for name, array in self._shard(view % self.views, s).items():
                np.take(array, local, axis=0, out=got[name][lo:hi])
        out = {name: np.empty_like(array) for name, array in got.items()}
        for name, array in got.items():
            out[name][order] = array
        return out

    def lookup(self, idx: torch.Tensor, view: int, device: torch.device) -> torch.Tensor:
        """fp32 logits [B, K] of frames ``idx`` [B] (CPU int64) in ``view``, on ``device``."""
        got = self.gather(idx.cpu().numpy(), view)
        values = torch.from_numpy(got["values"]).to(device, non_blocking=True).float()
        if self.storage == "fp16":
            return values
        classes = torch.from_numpy(got["indices"]).to(device, non_blocking=True).long()
        fill = torch.from_numpy(got["fill"]).to(device, non_blocking=True)
        return fill[:, None].repeat(1, self.num_classes).scatter_(1, classes, values)

    def dense(self, view: int = 0) -> torch.Tensor:
        """fp32 logits [N, K] of every frame in ``view`` (tests, inspection)."""
        return self.lookup(torch.arange(self.frames), view, torch.device("cpu"))


def _map(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``path`` memory-mapped read-only, checked to hold ``dtype`` ``shape``; CacheUnusable if not."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CacheUnusable(f"shard file {path.name} cannot be read ({type(exc).__name__})") from None
    if array.dtype != dtype or array.shape != shape:
        got = f"{array.dtype} {list(array.shape)}"
        raise CacheUnusable(f"shard file {path.name} holds {got}, not {dtype} {list(shape)}")
    return array.view(np.ndarray)  # plain ndarray indexing (faster); it keeps the map alive


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; None when absent; CacheUnusable when unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheUnusable(f"{path.name} is unreadable ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=8)
def _expected_shards(spec: _Spec) -> dict[str, tuple[int, int, int]]:
    return {_shard_name(view, start): (view, start, stop - start) for view, start, stop in spec.ranges()}


def _shard_problem(folder: Path, spec: _Spec, record: Any, digest: bool = True) -> str | None:
    """Why the shard ``record`` describes cannot be trusted, or None when its files check out."""
    expected = _expected_shards(spec).get(record.get("name") if isinstance(record, dict) else None)
    if expected is None or (record.get("view"), record.get("start"), record.get("rows")) != expected:
        return f"shard record {str(record)[:80]} does not belong to this cache"
    files = record.get("files")
    if not isinstance(files, dict) or set(files) != set(spec.arrays()):
        return f"shard {record['name']} lists the files {sorted(files or ())}, not {sorted(spec.arrays())}"
    for name, (dtype, row) in spec.arrays().items():
        entry = files[name] if isinstance(files[name], dict) else {}
        path = folder / f"{record['name']}.{name}.npy"
        if entry.get("file") != path.name or not path.is_file():
            return f"shard file {path.name} is missing"
        if path.stat().st_size != entry.get("bytes"):
            return f"shard file {path.name} has {path.stat().st_size} bytes, not {entry.get('bytes')}"
        try:
            _map(path, dtype, (expected[2], *row))  # the header: dtype and shape
        except CacheUnusable as exc:
            return str(exc)
        if digest and sha256_file(path) != entry.get("sha256"):
            return f"shard file {path.name} does not match its sha256 (corrupt)"
    return None


def _spec_of(record: Any, key: str, views: int, frames: int, num_classes: int) -> _Spec:
    """The spec an index records, checked against what the caller expects; CacheUnusable if not."""
    if not isinstance(record, dict) or record.get("format") != SHARD_FORMAT:
        raise CacheUnusable(f"{INDEX_FILE} is not an edgekd sharded teacher cache")
    if record.get("key") != key:
        raise CacheUnusable("its key does not match the teacher, data and settings of this run")
    got = (record.get("views"), record.get("frames"), record.get("num_classes"))
    if got != (views, frames, num_classes):
        raise CacheUnusable(
            f"it holds {got[0]} view(s) x {got[1]} frames x {got[2]} classes, "
            f"not {views} x {frames} x {num_classes}"
        )
    try:
        stored = (record.get("storage"), record.get("topk") or 0, record.get("shard_frames"))
        spec = _checked_spec(key, views, frames, num_classes, *stored)
    except (ConfigError, TypeError):
        raise CacheUnusable(f"{INDEX_FILE} has an invalid storage, topk or shard_frames") from None
    if record.get("arrays") != spec.header()["arrays"]:
        raise CacheUnusable(f"{INDEX_FILE} lists other arrays than {spec.storage} storage keeps")
    return spec


def open_sharded_logits(
    folder: str | os.PathLike[str],
    key: str,
    views: int,
    frames: int,
    num_classes: int,
    *,
    verify: bool = True,
) -> ShardedLogits | None:
    """The finished cache in ``folder``; None when there is none (absent, or its build never
    finished); CacheUnusable saying why when it is there but must not be trusted (another key
    or shape, a missing, resized or, with ``verify``, corrupt shard: every file's sha256 is
    checked, reading it in 1 MiB blocks)."""
    folder = Path(folder)
    record = _read_json(folder / INDEX_FILE)
    if record is None:
        return None
    spec = _spec_of(record, key, views, frames, num_classes)
    shards, expected = record.get("shards"), _expected_shards(spec)
    shards = shards if isinstance(shards, list) else []
    if sorted(str(s.get("name")) if isinstance(s, dict) else "" for s in shards) != sorted(expected):
        raise CacheUnusable(f"{INDEX_FILE} does not list the {len(expected)} shard(s) of this cache")
    for shard in shards:
        problem = _shard_problem(folder, spec, shard, digest=verify)
        if problem is not None:
            raise CacheUnusable(problem)
    with contextlib.suppress(OSError):  # the index's time says when the cache was last used (LRU pruning)
        os.utime(folder / INDEX_FILE)
    return ShardedLogits(folder, spec, {s["name"]: s for s in shards})


def _checked_spec(
    key: str, views: int, frames: int, num_classes: int, storage: str, topk: int, shard_frames: int
) -> _Spec:
    if storage not in ("fp16", "topk"):
        raise ConfigError(f"distill.kd.cache_storage {storage!r} is unknown", hint="use fp16 or topk")
    if storage == "topk" and not 0 < topk < num_classes:
        raise ConfigError(
            f"distill.kd.cache_topk {topk} must keep 1 to {num_classes - 1} of the {num_classes} classes",
            hint=f"use cache_storage: fp16, or cache_topk in 1..{num_classes - 1}",
        )
    sizes = {"views": views, "frames": frames, "num_classes": num_classes, "shard_frames": shard_frames}
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"teacher cache: {name} must be a positive integer, got {value!r}")
    return _Spec(key, views, frames, num_classes, storage, topk if storage == "topk" else 0, shard_frames)


def _record(spec: _Spec, fmt: str, shards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ordered = [shards[name] for name in _expected_shards(spec) if name in shards]
    return {"format": fmt, **spec.header(), "shards": ordered}


def _resume_records(folder: Path, spec: _Spec, say: Log) -> tuple[dict[str, dict[str, Any]], bool]:
    """The shards already written with ``spec`` whose files match their sha256, and whether
    ``index.json`` lists all of them (the cache is complete and needs no rewrite)."""
    for file, fmt in ((INDEX_FILE, SHARD_FORMAT), (PROGRESS_FILE, PROGRESS_FORMAT)):
        try:
            record = _read_json(folder / file)
        except CacheUnusable as exc:
            say(f"teacher cache: {folder / file}: {exc}; ignoring it")
            continue
        if record is None:
            continue
        if (
            not isinstance(record, dict)
            or record.get("format") != fmt
            or any(record.get(k) != v for k, v in spec.header().items())
        ):
            say(f"teacher cache: {folder / file} was written with other settings; ignoring it")
            continue
        good: dict[str, dict[str, Any]] = {}
        for shard in record.get("shards") or []:
            problem = _shard_problem(folder, spec, shard)
            if problem is None:
                good[shard["name"]] = shard
            else:
                say(f"teacher cache: {folder}: {problem}; building that shard again")
        return good, file == INDEX_FILE and len(good) == len(_expected_shards(spec))
    return {}, False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fill(
    maps: dict[str, np.ndarray], spec: _Spec, view: int, start: int, compute: Compute, where: str
) -> None:
    """Write every batch ``compute`` yields for one shard into its memory maps ``maps``."""
    n = len(maps["values"])
    written = np.zeros(n, dtype=bool)
    for idx, logits in compute(view, start, start + n):
        rows = np.asarray(idx).reshape(-1)
        logits = torch.as_tensor(logits).detach().cpu()
        if rows.dtype.kind not in "iu" or tuple(logits.shape) != (rows.size, spec.num_classes):
            raise ShardWriteError(
                f"teacher cache {where}: compute gave indices {rows.dtype} [{rows.size}] with logits "
                f"{list(logits.shape)}; expected integer indices [b] and logits [b, {spec.num_classes}]"
            )
        rows = rows.astype(np.int64) - start
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = int(rows[(rows < 0) | (rows >= n)][0]) + start
            raise ShardWriteError(
                f"teacher cache {where}: compute gave frame {bad} for view {view}, [{start}, {start + n})"
            )
        if written[rows].any() or np.unique(rows).size != rows.size:
            raise ShardWriteError(f"teacher cache {where}: compute gave a frame of view {view} twice")
        written[rows] = True
        packed = compress_logits(logits.float()[None], spec.storage, spec.topk)
        arrays = {"values": packed.values, "indices": packed.indices, "fill": packed.fill}
        contiguous = rows.size and rows[-1] - rows[0] == rows.size - 1 and bool((np.diff(rows) == 1).all())
        at = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows  # a slice writes faster
        for name, array in maps.items():
            array[at] = arrays[name][0].numpy()
    if not written.all():
        missing = np.flatnonzero(~written)
        raise ShardWriteError(
            f"teacher cache {where}: compute never gave {missing.size} frame(s) of view {view}'s range "
            f"[{start}, {start + n}) (first: frame {int(missing[0]) + start})"
        )


def _write_shard(
    folder: Path, spec: _Spec, view: int, start: int, stop: int, compute: Compute
) -> dict[str, Any]:
    """Build one shard under temporary names, fsync and rename it; returns its record."""
    name = _shard_name(view, start)
    files: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmps = {a: stack.enter_context(atomic_path(folder / f"{name}.{a}.npy")) for a in spec.arrays()}
        maps = {
            a: np.lib.format.open_memmap(tmps[a], mode="w+", dtype=dtype, shape=(stop - start, *row))
            for a, (dtype, row) in spec.arrays().items()
        }
        _fill(maps, spec, view, start, compute, str(folder))
        for array in maps.values():
            array.flush()
        maps.clear()  # unmap before hashing: the file is final
        for a, tmp in tmps.items():
            _fsync(tmp)
            files[a] = {"file": f"{name}.{a}.npy", "sha256": sha256_file(tmp), "bytes": tmp.stat().st_size}
    _fsync(folder)  # the renames themselves
    return {"name": name, "view": view, "start": start, "rows": stop - start, "files": files}


def _remove_strays(folder: Path, spec: _Spec) -> None:
    """Temporary files of a killed build and shard files of other settings (under the lock)."""
    keep = {f"{name}.{a}.npy" for name in _expected_shards(spec) for a in spec.arrays()}
    for path in folder.iterdir():
        stray = path.name.startswith("shard-") and path.name not in keep
        if path.is_file() and (stray or (path.name.startswith(".") and path.name.endswith(".tmp"))):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One builder per folder at a time (a second one waits, then finds the shards written)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): builders must not share a folder
        yield
        return
    with open(folder / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes, or the process dies
        yield


def build_sharded_logits(
    folder: str | os.PathLike[str],
    key: str,
    *,
    views: int,
    frames: int,
    num_classes: int,
    storage: str,
    topk: int,
    compute: Compute,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    say: Log | None = None,
) -> ShardedLogits:
    """Write (or finish, or reuse) the sharded cache of ``views`` x ``frames`` logits in ``folder``.

    ``compute(view, start, stop)`` is called once for each shard not yet written and verified;
    it yields (frame indices int64 [b] in [start, stop), fp32 logits [b, num_classes]) in any
    batching and order, every frame exactly once (else ShardWriteError naming the folder).
    Non-finite logits, or logits beyond fp16's range, raise ConfigError (``compress_logits``).
    The writes are durable (kept when the command fails later).
    """
    spec = _checked_spec(key, views, frames, num_classes, storage, topk, shard_frames)
    folder, say = Path(folder), say or (lambda _msg: None)
    started = time.perf_counter()
    with durable():
        ensure_dir(folder)
        with _locked(folder):
            done, complete = _resume_records(folder, spec, say)
            if complete:
                return ShardedLogits(folder, spec, done)
            _remove_strays(folder, spec)
            todo = [r for r in spec.ranges() if _shard_name(r[0], r[1]) not in done]
            atomic_write_json(folder / PROGRESS_FILE, _record(spec, PROGRESS_FORMAT, done))
            for stale in (folder / INDEX_FILE, folder / (INDEX_FILE + ".json")):
                stale.unlink(missing_ok=True)  # not complete until the new index is written
            say(f"teacher cache: writing {len(todo)} shard(s) into {folder} ({len(done)} already there)")
            last_said = time.perf_counter()
            for i, (view, start, stop) in enumerate(todo, 1):
                record = _write_shard(folder, spec, view, start, stop, compute)
                done[record["name"]] = record
                atomic_write_json(folder / PROGRESS_FILE, _record(spec, PROGRESS_FORMAT, done))
                if time.perf_counter() - last_said > 30:  # a line every 30 s at most
                    say(f"teacher cache: {i}/{len(todo)} shards written")
                    last_said = time.perf_counter()
            seconds = time.perf_counter() - started
            _finish(folder, spec, done, seconds)
    say(f"teacher cache: wrote {folder} in {seconds:.1f}s")
    return ShardedLogits(folder, spec, done)


def _finish(folder: Path, spec: _Spec, done: dict[str, dict[str, Any]], seconds: float) -> None:
    """Write the index (the cache is complete from here), its manifest, and drop the progress file."""
    index = folder / INDEX_FILE
    atomic_write_json(index, _record(spec, SHARD_FORMAT, done))
    _fsync(index)
    nbytes = sum(f["bytes"] for r in done.values() for f in r["files"].values())
    metrics = {"views": spec.views, "frames": spec.frames, "shards": len(done), "bytes": nbytes}
    config = {"key": spec.key, "storage": spec.storage, "topk": spec.topk or None}
    write_manifest(
        index, MANIFEST_KIND, config=config, metrics={**metrics, "build_seconds": round(seconds, 3)}
    )
    (folder / PROGRESS_FILE).unlink(missing_ok=True)
