"""The data stage's artifact (``edgekd.data.artifact``): ``open_data`` on an npz (in memory or
memory-mapped) and on a ``data.json`` index (an image folder with its prepared uint8 cache, or
an npz read lazily) gives the same samples, and a stale or tampered index is refused with one
InputFileError that names the index file; through the CLI that is one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.data import batches
from edgekd.data.artifact import (
    IMAGE_CACHE_NAME,
    INDEX_NAME,
    open_data,
    open_lazy_source,
    prepare_images,
    write_index,
)
from edgekd.data.batches import in_memory, network_input_shape
from edgekd.data.dataset import ArrayDataset
from edgekd.data.sources import DataSpec, ImageFolderOptions
from edgekd.errors import InputFileError

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

ROOT = Path(__file__).resolve().parents[2]
IMAGE_CLASSES = ("CNV", "NORMAL")


@pytest.fixture(autouse=True)
def in_process_reads(monkeypatch):
    """workers "auto" reads in this process: DataLoader workers in the pytest process can break
    later tests (tests/data/test_workers.py)."""
    monkeypatch.setattr(batches, "MAX_AUTO_WORKERS", 0)


# --- tiny files, shared with tests/distill/test_feed.py and tests/pipeline/test_lazy_data_stage.py ---


def write_image_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (24, 20)) -> Path:
    """Grayscale JPEGs ``root/CLASS/i.jpg`` (width x height ``size``): class 0 dark, class 1
    bright, both under noise, so a tiny network can tell them apart. Returns ``root``."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(IMAGE_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            level = 70 + 110 * label
            pixels = np.clip(level + rng.normal(0, 30, size[::-1]), 0, 255).astype(np.uint8)
            pixels[: size[1] // 3] //= 2  # a darker band on top: an up/down structure, like a B-scan
            Image.fromarray(pixels, "L").save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def image_spec(folder: Path, size: int = 16) -> DataSpec:
    """The data section of a tiny image folder, every split non-empty."""
    options = ImageFolderOptions(image_size=size, resize=size, val_fraction=0.25, test_fraction=0.25)
    return DataSpec(source="imagefolder", path=str(folder), imagefolder=options)


def write_image_index(folder: Path, out_dir: Path, size: int = 16) -> Path:
    """What the data stage writes for an image folder: ``data-images.npy`` and ``data.json``."""
    spec = image_spec(folder, size)
    cached = prepare_images(open_lazy_source(spec, folder), out_dir, workers=0)
    index = out_dir / INDEX_NAME
    write_index(index, spec, folder, cached, IMAGE_CACHE_NAME)
    return index


def write_tones_npz(path: Path, n: int = 96, length: int = 32, seed: int = 0) -> Path:
    """An uncompressed npz (``ArrayDataset.save_npz``) of ``n`` IQ tones [2, length], four
    classes, SNR labels, splits train / val / test = 4 / 1 / 1 of every six frames."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    t = np.arange(length)
    angle = 2 * np.pi * (y[:, None] + 1) / 16 * t + rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.stack([np.cos(angle), np.sin(angle)], axis=1) + rng.normal(0, 0.4, (n, 2, length))
    split = np.tile(np.array([0, 0, 0, 0, 1, 2], dtype=np.int8), n // 6 + 1)[:n]
    snr = np.tile(np.array([-10, 0, 10], dtype=np.int16), n // 3 + 1)[:n]
    names = ["t0", "t1", "t2", "t3"]
    ArrayDataset(x.astype(np.float32), y, names, snr=snr, split=split, source="tones").save_npz(path)
    return path


def write_npz_index(npz: Path, out_dir: Path) -> Path:
    """A data index that reads ``npz`` lazily (what the data stage writes for a large npz)."""
    spec = DataSpec(source="npz", path=str(npz))
    index = out_dir / INDEX_NAME
    write_index(index, spec, npz, open_lazy_source(spec, npz), None)
    return index


def all_samples(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(x [N, ...] as the dataset gives it, y [N]) read through the map-style contract."""
    pairs = dataset.__getitems__(list(range(len(dataset))))
    return np.stack([x.numpy() for x, _ in pairs]), np.asarray([y for _, y in pairs])


# --- the same samples, whichever form ---


def test_npz_in_memory_and_memory_mapped_give_the_same_samples(tmp_path):
    npz = write_tones_npz(tmp_path / "d.npz")
    memory, lazy = open_data(npz, storage="memory"), open_data(npz, storage="lazy")
    index = open_data(write_npz_index(npz, tmp_path))
    assert (in_memory(memory), in_memory(lazy), in_memory(index)) == (True, False, False)
    x_ref, y_ref = all_samples(memory)
    for other in (lazy, index, open_data(npz)):  # "auto": a tiny file stays in memory
        x, y = all_samples(other)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
        for name in ("split", "snr"):
            np.testing.assert_array_equal(getattr(other, name), getattr(memory, name))
        assert other.class_names == memory.class_names and other.input_shape == (2, 32)
    # A split read lazily is the same rows as the split held in memory.
    x, _ = all_samples(lazy.subset("val"))
    np.testing.assert_array_equal(x, all_samples(memory.subset("val"))[0])


def test_image_index_gives_the_folder_pixels_from_its_cache(tmp_path):
    folder = write_image_folder(tmp_path / "img")
    index = write_image_index(folder, tmp_path / "run")
    dataset = open_data(index)
    assert not in_memory(dataset) and dataset.sample_dtype == np.uint8
    assert dataset.input_shape == (1, 16, 16)  # grayscale scans cached as one band
    assert network_input_shape(dataset) == (3, 16, 16)
    decoded = open_lazy_source(image_spec(folder), folder)  # decodes the JPEG on every access
    x, y = all_samples(dataset)
    x_dec, y_dec = all_samples(decoded)
    np.testing.assert_array_equal(x[:, 0], x_dec[:, 0])  # the folder reads three equal bands
    np.testing.assert_array_equal(y, y_dec)
    np.testing.assert_array_equal(dataset.split, decoded.split)
    assert dataset.class_names == list(IMAGE_CLASSES)
    assert set(np.unique(dataset.split)) == {0, 1, 2}


# --- a stale or tampered index: one InputFileError naming the index ---


def _edit_index(index: Path, **changes) -> None:
    record = json.loads(index.read_text())
    record.update(changes)
    index.write_text(json.dumps(record))


def _add_image(folder: Path) -> None:
    Image.fromarray(np.full((20, 24), 90, np.uint8), "L").save(folder / "CNV" / "new.jpg")


def _touch_image(folder: Path) -> None:
    path = sorted((folder / "NORMAL").glob("*.jpg"))[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _move_image(folder: Path) -> None:  # same count, another label
    path = sorted((folder / "CNV").glob("*.jpg"))[0]
    path.rename(folder / "NORMAL" / "moved.jpg")


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


IMAGE_TAMPERING = {
    "an image added": lambda run, folder: _add_image(folder),
    "an image removed": lambda run, folder: sorted((folder / "CNV").glob("*.jpg"))[-1].unlink(),
    "an image touched": lambda run, folder: _touch_image(folder),
    "an image moved to another class": lambda run, folder: _move_image(folder),
    "the cache deleted": lambda run, folder: (run / IMAGE_CACHE_NAME).unlink(),
    "the cache truncated": lambda run, folder: _truncate(run / IMAGE_CACHE_NAME),
    "the folder deleted": lambda run, folder: shutil.rmtree(folder),
    "malformed JSON": lambda run, folder: (run / INDEX_NAME).write_text("{not json"),
    "not an object": lambda run, folder: (run / INDEX_NAME).write_text("[1, 2]"),
    "a wrong format tag": lambda run, folder: _edit_index(run / INDEX_NAME, format="edgekd.data-index/0"),
    "image_cache leading up": lambda run, folder: _edit_index(run / INDEX_NAME, image_cache="../x.npy"),
    "image_cache absolute": lambda run, folder: _edit_index(
        run / INDEX_NAME, image_cache=str((run / IMAGE_CACHE_NAME).resolve())
    ),
    "image_cache a number": lambda run, folder: _edit_index(run / INDEX_NAME, image_cache=3),
    "frames a string": lambda run, folder: _edit_index(run / INDEX_NAME, frames="24"),
    "frames miscounted": lambda run, folder: _edit_index(run / INDEX_NAME, frames=1),
    "labels digest changed": lambda run, folder: _edit_index(run / INDEX_NAME, labels_sha256="0" * 64),
    "a spec naming a source read whole": lambda run, folder: _edit_index(
        run / INDEX_NAME, spec={"source": "rml2016", "path": str(folder / "x.pkl")}
    ),
    "a spec that does not validate": lambda run, folder: _edit_index(
        run / INDEX_NAME,
        spec={
            "source": "imagefolder",
            "path": str(folder),
            "storage": "lazy",
            "imagefolder": {"image_size": 32, "resize": 16},
        },
    ),
}


@pytest.mark.parametrize("tampering", list(IMAGE_TAMPERING))
def test_a_stale_image_index_is_refused_naming_it(tmp_path, tampering):
    folder = write_image_folder(tmp_path / "img", per_class=8)
    run = tmp_path / "run"
    index = write_image_index(folder, run)
    open_data(index)  # fresh: opens
    IMAGE_TAMPERING[tampering](run, folder)
    with pytest.raises(InputFileError) as info:
        open_data(index)
    assert str(index) in info.value.message
    assert info.value.hint  # says how to fix it (run the data stage again)


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda x, y: (x, (y + 1) % 4), id="other labels, same frames"),
        pytest.param(lambda x, y: (x * 2, y), id="new frames, same labels"),
    ],
)
def test_an_npz_index_refuses_a_source_rewritten_in_place(tmp_path, rewrite):
    npz = write_tones_npz(tmp_path / "d.npz")
    index = write_npz_index(npz, tmp_path)
    x, y = rewrite(*all_samples(open_data(npz)))
    lazy = open_data(npz, storage="lazy")
    ArrayDataset(x, y, lazy.class_names, snr=lazy.snr, split=lazy.split).save_npz(npz)
    with pytest.raises(InputFileError, match="changed since the data stage") as info:
        open_data(index)
    assert str(index) in info.value.message


def test_an_index_written_before_sizes_were_recorded_still_opens(tmp_path):
    npz = write_tones_npz(tmp_path / "d.npz")
    index = write_npz_index(npz, tmp_path)
    record = json.loads(index.read_text())
    assert record.pop("source_stat")["size"] == npz.stat().st_size
    index.write_text(json.dumps(record))
    assert len(open_data(index)) == len(open_data(npz))


def test_an_index_whose_source_is_gone_names_both(tmp_path):
    npz = write_tones_npz(tmp_path / "d.npz")
    index = write_npz_index(npz, tmp_path)
    npz.unlink()
    with pytest.raises(InputFileError) as info:
        open_data(index)
    assert str(index) in info.value.message and str(npz.resolve()) in info.value.message


def test_a_missing_artifact_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError):
        open_data(tmp_path / "data.json")


# --- through the CLI: one line, exit 2 ---


def _edgekd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_cli_refuses_a_stale_index_in_one_line(tmp_path):
    folder = write_image_folder(tmp_path / "img", per_class=8)
    index = write_image_index(folder, tmp_path / "run")
    _add_image(folder)
    model = tmp_path / "student.onnx"
    model.write_bytes(b"not read: the data is checked first")
    done = _edgekd("quantize", str(model), "--data", str(index), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert str(index) in lines[0] and "changed" in lines[0]
    assert len(lines) <= 2  # the error, and its hint


def test_distill_data_takes_a_data_index(tmp_path):
    """``edgekd distill --data`` accepts the ``data.json`` an earlier run's data stage wrote
    (grayscale pixels [1, S, S] fit a recipe's data.input_shape [3, S, S]), and says so."""
    from edgekd.api.distill_recipe import _checked_data

    index = write_image_index(write_image_folder(tmp_path / "img", per_class=8), tmp_path / "run")
    assert _checked_data(index, [3, 16, 16], ()) == index
    done = _edgekd("distill", "--help", cwd=ROOT)
    assert done.returncode == 0
    options = done.stdout[done.stdout.index("Options:") :]
    assert "data.json" in options[options.index("--data") : options.index("--teacher")]
