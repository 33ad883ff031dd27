"""Image folders read lazily: files listed at open, each image decoded in a DataLoader worker.

:class:`LazyImageFolder` lists the folder with :class:`edgekd.data.images.ImageFolder` (the
same layouts, checks, class order and splits) and decodes an image only when a sample is
asked for, with the very transform of the in-memory loader (:func:`edgekd.data.images.load_image`),
so its samples equal ``ImageFolder.to_array_dataset()``'s arrays. Memory does not grow with
the number of images: only the file list and labels are held.

Decoding a JPEG, resizing and normalising costs a few milliseconds per image on one core, in
every epoch. :func:`prepare_image_cache` does it once: the resized, centre-cropped images go
into one uint8 ``.npy`` file ([N, C, S, S], C = 1 for grayscale scans: 1/12 of float32 RGB),
read through a memory map by :class:`CachedImageDataset`. A manifest beside it records the
sha256 of the file list (path, size, modification time of every image) and the settings; a
later call with the same folder and settings reuses the file instead of decoding again.

    folder = LazyImageFolder(ImageFolder("OCT2017", transform=ImageTransform(384, 400)))
    cached = prepare_image_cache(folder, "cache/oct2017-384.npy", workers=2)
    loader = DataLoader(cached.subset("train"), batch_size=64, sampler=..., num_workers=2)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.artifacts import atomic_path, durable, read_manifest, write_manifest
from edgekd.data.images import ImageFolder, ImageTransform, decode_image, load_image, normalize_image
from edgekd.data.mapstyle import Augment, MapDataset
from edgekd.errors import ConfigError, InputFileError

CACHE_KIND = "image_cache"
CACHE_FORMAT = 1
CACHE_HINT = "delete the cache file and its .json manifest; prepare_image_cache writes them again"


class LazyImageFolder(MapDataset):
    """The images of an :class:`~edgekd.data.images.ImageFolder`, decoded on access.

    Args:
        folder: a listed folder (its transform and splits apply), or a path (default options).
        max_per_class: keep the first that many images of each class and split (as
            ``ImageFolder.to_array_dataset``); None keeps all.
        draft: let Pillow decode large JPEGs at a reduced scale (see
            :func:`edgekd.data.images.decode_image`; a no-op for images less than twice
            ``resize`` on their shorter side, which is when samples equal the in-memory loader's).
        raw: samples are the uint8 pixels [channels, S, S], resized and cropped but not
            normalised (:func:`normalize_batch` does that on the device): 1/4 of the bytes of
            float32 through the DataLoader, 1/12 for grayscale with ``channels=1``.
        channels: with ``raw``, 3 (a grayscale image's band repeated) or 1 (grayscale scans:
            a colour image is then an InputFileError naming it).
        augment, augment_seed: the training views, see :mod:`edgekd.data.mapstyle`
            (e.g. :func:`edgekd.data.images.augment`); with ``raw`` they get uint8 pixels.
    """

    def __init__(
        self,
        folder: ImageFolder | str | os.PathLike[str],
        *,
        max_per_class: int | None = None,
        draft: bool = True,
        raw: bool = False,
        channels: int = 3,
        augment: Augment | None = None,
        augment_seed: int = 0,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        listing = folder if isinstance(folder, ImageFolder) else ImageFolder(folder)
        keep = listing.keep_indices(max_per_class)
        size = listing.transform.image_size
        super().__init__(
            rows=keep,
            y=listing.y[keep],
            class_names=listing.class_names,
            input_shape=(channels, size, size) if raw else listing.input_shape,
            split=listing.split[keep],
            source=f"image folder {listing.root}",
            augment=augment,
            augment_seed=augment_seed,
        )
        self.root = listing.root
        self.files: list[Path] = list(listing.files)
        self.transform: ImageTransform = listing.transform
        self.draft = bool(draft)
        self.raw, self.channels = bool(raw), int(channels)
        if self.raw:
            self.sample_dtype = np.uint8

    def _read(self, rows: np.ndarray) -> list[np.ndarray]:
        if not self.raw:
            return [load_image(self.files[r], self.transform, draft=self.draft) for r in rows.tolist()]
        return [self._pixels(r) for r in rows.tolist()]

    def _pixels(self, row: int) -> np.ndarray:
        pixels = decode_image(self.files[row], self.transform, draft=self.draft)
        if len(pixels) == self.channels:
            return pixels
        if self.channels == 1:
            raise InputFileError(
                f"image {self.files[row]} is in colour but {self.source} is read as one channel",
                hint="read it with channels=3",
            )
        return np.repeat(pixels, 3, axis=0)

    def pixels(self, index: int) -> np.ndarray:
        """Sample ``index`` resized and cropped but not normalised: uint8 [C, S, S], C = 1 for a
        grayscale image, 3 for a colour one."""
        return decode_image(self.files[self.rows[self._index(index)]], self.transform, draft=self.draft)


def normalize_batch(pixels: torch.Tensor, transform: ImageTransform) -> torch.Tensor:
    """uint8 [B, C, H, W] (C = 1 or 3) -> float32 [B, 3, H, W], as :func:`edgekd.data.images.normalize_image`.

    Run it on the device: a batch crosses the bus as uint8, a quarter (a twelfth for
    grayscale) of its float32 size.
    """
    mean = torch.tensor(transform.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(transform.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.to(torch.float32) / 255.0 - mean) / std


def cache_key(folder: LazyImageFolder, channels: int | str) -> str:
    """sha256 of what the cached pixels depend on: each image's path (relative to the root),
    size and modification time, in dataset order, and the resize/crop/draft settings."""
    digest = hashlib.sha256()
    head = {
        "format": CACHE_FORMAT,
        "image_size": folder.transform.image_size,
        "resize": folder.transform.resize,
        "draft": folder.draft,
        "channels": channels,
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for row in folder.rows.tolist():
        path = folder.files[row]
        try:
            stat = path.stat()
        except OSError as exc:
            raise InputFileError(f"image {path} cannot be read: {exc.strerror or exc}") from None
        rel = path.relative_to(folder.root).as_posix()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class _Pixels(torch.utils.data.Dataset):
    """uint8 [C, S, S] of each image, for the workers that fill the cache."""

    def __init__(self, folder: LazyImageFolder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.folder.pixels(index)

    def __getitems__(self, keys: Sequence[int]) -> list[np.ndarray]:
        return [self.folder.pixels(i) for i in keys]


class _NeedsColour(Exception):
    """A colour image met while filling a grayscale cache: start again with three channels."""


def _fill(out: np.ndarray, folder: LazyImageFolder, workers: int, say: Callable[[str], None] | None) -> None:
    """Decode every image of ``folder`` into ``out`` uint8 [N, C, S, S], in order, with ``workers``."""
    from edgekd.data.batches import start_method
    from edgekd.data.worker_errors import CarryErrors, carried_errors

    loader = torch.utils.data.DataLoader(
        CarryErrors(_Pixels(folder)),  # a bad image met in a worker: the one line naming it
        batch_size=None,
        num_workers=workers,
        prefetch_factor=16 if workers else None,
        multiprocessing_context=start_method() if workers else None,
    )
    channels = out.shape[1]
    started = time.perf_counter()
    with carried_errors():
        _copy(loader, out, channels, len(folder), say, started)


def _copy(loader: Any, out: np.ndarray, channels: int, total: int, say: Any, started: float) -> None:
    for i, pixels in enumerate(loader):  # uint8 tensors [C, S, S] (batch_size None: no collation)
        if pixels.shape[0] > channels:
            raise _NeedsColour
        out[i] = pixels.numpy()  # a grayscale image in a colour cache: broadcast to three channels
        if say is not None and (i + 1) % 5000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            say(f"image cache: {i + 1}/{total} images ({rate:.0f}/s)")


def _matching_cache(path: Path, key: str, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a finished cache written with ``key`` (its manifest says so and the
    header holds the expected shape; the pixels are not hashed again)."""
    if not path.is_file():
        return False
    manifest = read_manifest(path, required=False)
    if manifest.get("kind") != CACHE_KIND or manifest.get("config", {}).get("key") != key:
        return False
    if manifest.get("size_bytes") != path.stat().st_size:
        return False
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape) == shape
    except (OSError, ValueError, EOFError):
        return False


def prepare_image_cache(
    folder: LazyImageFolder,
    path: str | os.PathLike[str],
    *,
    workers: int = 0,
    channels: int | str = "auto",
    say: Callable[[str], None] | None = None,
) -> CachedImageDataset:
    """Decode ``folder``'s images once into ``path`` (uint8 [N, C, S, S] ``.npy``), or reuse it.

    Args:
        folder: the images, in their dataset order (its ``max_per_class`` and ``draft`` apply).
        path: the cache file; ``<path>.json`` is its manifest (kind ``image_cache``, the key
            of :func:`cache_key` in ``config.key``).
        workers: DataLoader worker processes that decode (0: this process).
        channels: 1 (grayscale, as the first band), 3, or "auto": 1 while every image is
            grayscale, 3 as soon as one is not (the pass then starts again).
        say: progress messages, every 5,000 images.

    The file is written atomically (edgekd.artifacts) and kept when a later stage fails: a
    killed run leaves no half cache. The samples of the returned dataset equal the folder's.
    """
    if channels not in ("auto", 1, 3):
        raise ConfigError(f"channels must be 1, 3 or 'auto', got {channels!r}")
    path = Path(path)
    size = folder.transform.image_size
    key = cache_key(folder, channels)
    allowed = (1, 3) if channels == "auto" else (int(channels),)
    if any(_matching_cache(path, key, (len(folder), c, size, size)) for c in allowed):
        return CachedImageDataset(folder, path)
    for c in allowed:
        shape = (len(folder), c, size, size)
        started = time.perf_counter()
        try:
            with durable(), atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                _fill(out, folder, workers, say)
                out.flush()
                del out
        except _NeedsColour:
            continue
        with durable():
            metrics = {"images": len(folder), "shape": list(shape), "seconds": time.perf_counter() - started}
            write_manifest(path, CACHE_KIND, config={"key": key, "root": str(folder.root)}, metrics=metrics)
        return CachedImageDataset(folder, path)
    raise ConfigError(
        f"{folder.source} holds colour images but channels=1 was asked for", hint="use channels=3 or 'auto'"
    )


class CachedImageDataset(MapDataset):
    """The images of a :class:`LazyImageFolder` read from its :func:`prepare_image_cache` file.

    Samples are ``normalize_image(pixels)``: the folder's values. With ``raw`` (default: as the
    folder reads) they are the uint8 pixels [C, S, S] as stored instead (C = 1 or 3), to
    normalise on the device with :func:`normalize_batch` (``input_shape`` then says [C, S, S]);
    the folder's ``augment`` then gets uint8 pixels. The memory map is opened in each process
    that reads (never pickled), so the dataset crosses to DataLoader workers.
    """

    def __init__(
        self, folder: LazyImageFolder, path: str | os.PathLike[str], *, raw: bool | None = None
    ) -> None:
        self.path = Path(path)
        self._pixels: Any = None
        self._pid = -1
        pixels = self._array()
        size = folder.transform.image_size
        if pixels.ndim != 4 or pixels.shape[0] != len(folder) or pixels.shape[1] not in (1, 3):
            raise InputFileError(
                f"image cache {self.path} holds {list(pixels.shape)}, not {len(folder)} images",
                hint=CACHE_HINT,
            )
        if pixels.shape[2:] != (size, size):
            raise InputFileError(
                f"image cache {self.path} holds images of {list(pixels.shape[2:])}", hint=CACHE_HINT
            )
        self.channels = int(pixels.shape[1])
        self.raw = folder.raw if raw is None else bool(raw)
        if self.raw:
            self.sample_dtype = np.uint8
        super().__init__(
            rows=np.arange(len(folder)),
            y=folder.y,
            class_names=folder.class_names,
            input_shape=(self.channels, size, size) if self.raw else (3, size, size),
            split=folder.split,
            source=f"image cache {self.path} of {folder.source}",
            augment=folder.augment,
            augment_seed=folder.augment_seed,
        )
        self.transform = folder.transform

    def _array(self) -> np.ndarray:
        if self._pixels is None or self._pid != os.getpid():
            try:
                pixels = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise InputFileError(
                    f"image cache {self.path} cannot be read: {exc}", hint=CACHE_HINT
                ) from None
            if pixels.dtype != np.uint8:
                raise InputFileError(
                    f"image cache {self.path} holds {pixels.dtype}, not uint8", hint=CACHE_HINT
                )
            self._pixels, self._pid = pixels, os.getpid()
        return self._pixels

    def _read(self, rows: np.ndarray) -> Sequence[np.ndarray]:
        pixels = self._array()
        if self.raw:
            return pixels[rows]
        return [normalize_image(pixels[r], self.transform) for r in rows.tolist()]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pixels"], state["_pid"] = None, -1  # a memory map is reopened, never pickled whole
        return state
