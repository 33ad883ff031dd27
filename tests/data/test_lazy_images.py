"""Lazy image folders and the uint8 image cache: the in-memory loader's values, one image at a time."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from edgekd.artifacts import read_manifest
from edgekd.data import lazy_images
from edgekd.data.images import ImageFolder, ImageTransform, load_image
from edgekd.data.lazy_images import CachedImageDataset, LazyImageFolder, normalize_batch, prepare_image_cache
from edgekd.errors import InputFileError

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

T = ImageTransform(image_size=12, resize=14)


def _reference(path, t: ImageTransform) -> np.ndarray:
    """The eval transform as the in-memory loader first wrote it: RGB, resize, crop, normalise."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        scale = t.resize / min(w, h)
        img = img.resize((max(t.resize, round(w * scale)), max(t.resize, round(h * scale))), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    top, left = (arr.shape[0] - t.image_size) // 2, (arr.shape[1] - t.image_size) // 2
    arr = arr[top : top + t.image_size, left : left + t.image_size]
    arr = (arr - np.asarray(t.mean, np.float32)) / np.asarray(t.std, np.float32)
    return arr.transpose(2, 0, 1)


def _folder(root, modes=("L",), per_class: int = 3, size=(23, 17)) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("CNV", "DME", "NORMAL")):
        for i in range(per_class):
            mode = modes[(c + i) % len(modes)]
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            jpeg = i % 2 and mode in ("L", "RGB")
            path = root / name / f"{i}.{'jpg' if jpeg else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "RGB").convert(mode).save(path)


@pytest.mark.parametrize("modes", [("L",), ("RGB", "P", "L")])
def test_samples_equal_the_in_memory_loader(tmp_path, modes):
    _folder(tmp_path, modes)
    listing = ImageFolder(tmp_path, transform=T, seed=1)
    memory = listing.to_array_dataset()
    lazy = LazyImageFolder(listing)
    assert len(lazy) == 9 and lazy.input_shape == (3, 12, 12) and lazy.class_names == memory.class_names
    np.testing.assert_array_equal(lazy.y, memory.y)
    np.testing.assert_array_equal(lazy.split, memory.split)
    for i in range(len(lazy)):
        x, y = lazy[i]
        assert y == memory.y[i] and x.dtype == torch.float32
        np.testing.assert_allclose(x.numpy(), memory.x[i], atol=1e-6)
        np.testing.assert_allclose(x.numpy(), _reference(listing.files[i], T), atol=1e-6)
    capped = LazyImageFolder(listing, max_per_class=1)
    np.testing.assert_array_equal(capped.to_array_dataset().x, listing.to_array_dataset(max_per_class=1).x)


def test_draft_decodes_large_jpegs_close_to_the_full_decode(tmp_path):
    yy, xx = np.mgrid[0:400, 0:360]
    scan = (128 + 60 * np.sin(yy / 23.0) + 40 * np.cos(xx / 31.0)).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(scan, "L").save(path, quality=95)
    t = ImageTransform(image_size=64, resize=80)
    with Image.open(path) as img:
        img.draft(img.mode, (80, 88))
        assert img.size == (90, 100)  # decoded at 1/4 scale in the DCT domain
    full, drafted = load_image(path, t), load_image(path, t, draft=True)
    assert np.abs(full - drafted).mean() < 0.02 and np.abs(full - drafted).max() < 0.2  # units of std
    no_op = ImageTransform(image_size=200, resize=220)  # shorter side < 2x resize: nothing to draft
    np.testing.assert_array_equal(load_image(path, no_op, draft=True), load_image(path, no_op))


def test_unreadable_image_is_named_when_read(tmp_path):
    _folder(tmp_path)
    (tmp_path / "DME" / "1.jpg").write_bytes(b"\xff\xd8 truncated")
    lazy = LazyImageFolder(ImageFolder(tmp_path, transform=T))
    bad = [str(p) for p in lazy.files].index(str(tmp_path / "DME" / "1.jpg"))
    with pytest.raises(InputFileError, match=r"DME/1\.jpg cannot be read"):
        lazy[bad]


def test_cache_holds_grayscale_as_one_uint8_channel_and_is_reused(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _folder(root)
    lazy = LazyImageFolder(ImageFolder(root, transform=T))
    cache = tmp_path / "cache" / "images.npy"
    cached = prepare_image_cache(lazy, cache)
    stored = np.load(cache)
    assert stored.shape == (9, 1, 12, 12) and stored.dtype == np.uint8
    assert isinstance(cached, CachedImageDataset) and cached.input_shape == (3, 12, 12)
    for i in range(len(lazy)):
        np.testing.assert_array_equal(cached[i][0].numpy(), lazy[i][0].numpy())
    manifest = read_manifest(cache)
    assert manifest["kind"] == "image_cache" and len(manifest["config"]["key"]) == 64
    assert not list(cache.parent.glob(".*tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("a matching cache is decoded again")

    monkeypatch.setattr(lazy_images, "_fill", no_decoding)
    again = prepare_image_cache(LazyImageFolder(ImageFolder(root, transform=T)), cache)
    np.testing.assert_array_equal(again[3][0].numpy(), cached[3][0].numpy())
    monkeypatch.undo()
    changed = root / "CNV" / "0.png"
    Image.new("L", (23, 17), 9).save(changed)
    os.utime(changed, ns=(1, 1))
    rebuilt = prepare_image_cache(LazyImageFolder(ImageFolder(root, transform=T)), cache)
    np.testing.assert_array_equal(rebuilt[0][0].numpy(), load_image(changed, T))


def test_colour_cache_raw_pixels_and_device_normalisation(tmp_path):
    _folder(tmp_path / "images", modes=("L", "RGB"))
    lazy = LazyImageFolder(ImageFolder(tmp_path / "images", transform=T))
    cached = prepare_image_cache(lazy, tmp_path / "c.npy", workers=0)
    assert cached.channels == 3
    raw = CachedImageDataset(lazy, tmp_path / "c.npy", raw=True)
    pixels, label = raw[4]
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 12, 12) and label == lazy.y[4]
    batch = torch.stack([raw[i][0] for i in range(len(raw))])
    expected = torch.stack([lazy[i][0] for i in range(len(lazy))])
    torch.testing.assert_close(normalize_batch(batch, T), expected, atol=1e-6, rtol=0)
    assert len(pickle.dumps(raw)) < 10_000  # the memory map is reopened, never pickled
    with pytest.raises(InputFileError, match=r"image cache .* holds"):
        CachedImageDataset(lazy.take([0, 1]), raw.path)


def test_raw_pixels_stay_uint8_until_normalised_on_the_device(tmp_path):
    _folder(tmp_path, modes=("L",))
    listing = ImageFolder(tmp_path, transform=T)
    floats = LazyImageFolder(listing)
    gray = LazyImageFolder(listing, raw=True, channels=1)
    assert gray.input_shape == (1, 12, 12) and gray[0][0].dtype == torch.uint8
    batch = torch.stack([x for x, _ in gray.__getitems__(list(range(len(gray))))])
    expected = torch.stack([floats[i][0] for i in range(len(floats))])
    torch.testing.assert_close(normalize_batch(batch, T), expected, atol=1e-6, rtol=0)
    three = LazyImageFolder(listing, raw=True)
    assert three[2][0].shape == (3, 12, 12) and torch.equal(three[2][0][1], gray[2][0][0])
    Image.new("RGB", (23, 17), (200, 10, 10)).save(tmp_path / "DME" / "0.png")
    with pytest.raises(InputFileError, match=r"DME/0\.png is in colour"):
        LazyImageFolder(ImageFolder(tmp_path, transform=T), raw=True, channels=1).__getitems__(list(range(9)))
