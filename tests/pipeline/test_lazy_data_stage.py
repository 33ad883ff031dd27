"""The data stage with lazily read data (``stage_data``: ``data.json`` and the uint8 image
cache, or ``data.npz``, by ``data.storage``), and the teacher and distillation stages trained
from that artifact: the student checkpoint records the network's input, [3, S, S] for
grayscale scans cached as one band."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgekd.artifacts import read_manifest
from edgekd.config import from_dict
from edgekd.data import batches
from edgekd.data.artifact import IMAGE_CACHE_NAME, INDEX_FORMAT, open_data
from edgekd.data.batches import in_memory
from edgekd.errors import ConfigError
from edgekd.pipeline.data_stage import stage_data
from edgekd.pipeline.distill_stage import stage_distill
from edgekd.pipeline.recipe import Recipe
from edgekd.pipeline.teacher_stage import stage_teacher
from tests.data.test_artifact import IMAGE_CLASSES, all_samples, write_image_folder

pytest.importorskip("PIL.Image", reason="Pillow is not installed")
pytest.importorskip("timm", reason="timm is not installed")
h5py = pytest.importorskip("h5py", reason="h5py is not installed")

SIZE = 16


@pytest.fixture(autouse=True)
def in_process_reads(monkeypatch):
    """workers "auto" reads in this process: DataLoader workers in the pytest process can break
    later tests (tests/data/test_workers.py; tests/distill/test_feed.py runs them in subprocesses)."""
    monkeypatch.setattr(batches, "MAX_AUTO_WORKERS", 0)


def _recipe(data: dict[str, Any], **sections: Any) -> Recipe:
    return from_dict(Recipe, {"name": "lazy", "data": data, **sections})


def _images(folder: Path, **extra: Any) -> dict[str, Any]:
    options = {"image_size": SIZE, "resize": SIZE, "val_fraction": 0.25, "test_fraction": 0.25}
    return {"source": "imagefolder", "path": str(folder), "imagefolder": options, **extra}


def _stage_data(recipe: Recipe, out: Path) -> Path:
    return stage_data(recipe.data, out, Path, workers=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("stage") / "img", per_class=12)


def test_an_image_folder_becomes_a_data_index_and_a_uint8_cache(folder, tmp_path):
    path = _stage_data(_recipe(_images(folder)), tmp_path)  # data.storage: auto
    assert path == tmp_path / "data.json"
    assert (tmp_path / IMAGE_CACHE_NAME).is_file() and not (tmp_path / "data.npz").exists()
    index = json.loads(path.read_text())
    assert index["format"] == INDEX_FORMAT and index["image_cache"] == IMAGE_CACHE_NAME
    assert index["frames"] == 2 * 12 and index["class_names"] == list(IMAGE_CLASSES)
    assert read_manifest(path)["kind"] == "data-index"
    pixels = np.load(tmp_path / IMAGE_CACHE_NAME, mmap_mode="r")
    assert pixels.dtype == np.uint8 and pixels.shape == (24, 1, SIZE, SIZE)  # one band: grayscale
    dataset = open_data(path)
    assert not in_memory(dataset) and len(dataset) == 24
    # Run again: the cache is reused, not decoded again.
    stamp = (tmp_path / IMAGE_CACHE_NAME).stat().st_mtime_ns
    assert _stage_data(_recipe(_images(folder)), tmp_path) == path
    assert (tmp_path / IMAGE_CACHE_NAME).stat().st_mtime_ns == stamp


def test_storage_memory_writes_the_float_frames_to_data_npz(folder, tmp_path):
    path = _stage_data(_recipe(_images(folder, storage="memory")), tmp_path)
    assert path == tmp_path / "data.npz" and not (tmp_path / "data.json").exists()
    memory = open_data(path)
    assert in_memory(memory) and memory.input_shape == (3, SIZE, SIZE)
    lazy = open_data(_stage_data(_recipe(_images(folder)), tmp_path / "lazy"))
    np.testing.assert_array_equal(memory.y, lazy.y)
    np.testing.assert_array_equal(memory.split, lazy.split)
    pixels, _ = all_samples(lazy)
    normalised = batches.model_input(torch.from_numpy(pixels), lazy, "cpu").numpy()
    np.testing.assert_allclose(all_samples(memory)[0], normalised, atol=1e-6)


def _write_rml(path: Path) -> Path:
    from tests.data.test_lazy_rml2018 import write_rml

    write_rml(path, per_cell=8, length=32)
    return path


def test_rml2018_lazy_is_a_data_index_with_the_frames_of_memory(tmp_path):
    hdf5 = _write_rml(tmp_path / "rml.hdf5")
    data = {"source": "rml2018", "path": str(hdf5), "rml2018": {"classes": ["BPSK", "QPSK", "FM", "OOK"]}}
    lazy_path = _stage_data(_recipe({**data, "storage": "lazy"}), tmp_path / "lazy")
    assert lazy_path.name == "data.json" and not (lazy_path.parent / IMAGE_CACHE_NAME).exists()
    assert json.loads(lazy_path.read_text())["image_cache"] is None
    memory_path = _stage_data(_recipe(data), tmp_path / "memory")  # auto: a small file fits in memory
    assert memory_path.name == "data.npz"
    lazy, memory = open_data(lazy_path), open_data(memory_path)
    assert not in_memory(lazy) and lazy.input_shape == (2, 32)
    for name in ("y", "split", "snr"):
        np.testing.assert_array_equal(getattr(lazy, name), getattr(memory, name))
    np.testing.assert_array_equal(all_samples(lazy)[0], all_samples(memory)[0])


def test_storage_lazy_is_kept_for_an_npz_source(tmp_path):
    """data.storage: lazy on a (small) npz: the later stages, which open the data stage's
    artifact with ``open_data(path)`` alone, read it lazily too."""
    from tests.data.test_artifact import write_tones_npz

    npz = write_tones_npz(tmp_path / "tones.npz")
    path = _stage_data(_recipe({"source": "npz", "path": str(npz), "storage": "lazy"}), tmp_path / "out")
    assert not in_memory(open_data(path))
    path = _stage_data(_recipe({"source": "npz", "path": str(npz)}), tmp_path / "auto")
    assert path == npz and in_memory(open_data(path))  # auto: a small npz is used in place, in memory


def test_synthetic_data_has_no_lazy_form(tmp_path):
    with pytest.raises(ConfigError, match="synthetic_modulation"):
        _stage_data(_recipe({"source": "synthetic_modulation", "storage": "lazy"}), tmp_path)
    assert not (tmp_path / "data.json").exists()


def _train(epochs: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "batch_size": 8,
        "lr": 0.01,
        "device": "cpu",
        "num_threads": 1,
        "num_workers": 0,
        **extra,
    }


def test_teacher_and_student_train_from_the_image_index(folder, tmp_path):
    views = {"image": {}, "views": 2}
    recipe = _recipe(
        _images(folder),
        teacher={"model": "timm:test_resnet", "train": _train(augment=views)},
        student={"model": "timm:test_resnet"},
        distill={"train": _train(epochs=2, augment=views)},
    )
    data = _stage_data(recipe, tmp_path)
    teacher = stage_teacher(recipe.teacher, data, tmp_path, Path)
    student = stage_distill(recipe.student, recipe.distill, data, teacher, tmp_path)
    from edgekd.models.checkpoint import load_checkpoint

    for path in (teacher, student):
        model, meta = load_checkpoint(path)
        assert meta.input_shape == (3, SIZE, SIZE) and meta.in_channels == 3
        assert meta.class_names == list(IMAGE_CLASSES)
        assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 2)
    manifest = read_manifest(student)
    assert len(manifest["metrics"]["history"]) == 2
    parents = json.dumps(manifest.get("parents", []))
    assert "data.json" in parents
    shards = list((tmp_path / "teacher_cache").rglob("index.json"))
    assert len(shards) == 1  # the lazy data's teacher cache: memory-mapped shards, complete


def test_a_student_distils_from_an_rml2018_index_with_iq_views(tmp_path):
    hdf5 = _write_rml(tmp_path / "rml.hdf5")
    data = {
        "source": "rml2018",
        "path": str(hdf5),
        "storage": "lazy",
        "rml2018": {"classes": ["BPSK", "QPSK"]},
    }
    iq = {"time_shift": 4, "phase_rotation": True, "views": 2}
    recipe = _recipe(
        data,
        teacher={"model": "edgekd:cnn1d_small", "kwargs": {"width": 4}, "train": _train()},
        student={"model": "edgekd:cnn1d_small", "kwargs": {"width": 4}},
        distill={"train": _train(epochs=2, augment=iq)},
    )
    path = _stage_data(recipe, tmp_path)
    teacher = stage_teacher(recipe.teacher, path, tmp_path, Path)
    student = stage_distill(recipe.student, recipe.distill, path, teacher, tmp_path)
    from edgekd.models.checkpoint import load_checkpoint

    assert load_checkpoint(student)[1].input_shape == (2, 32)
    assert len(list((tmp_path / "teacher_cache").rglob("shard-1-*.values.npy"))) == 1  # view 1 cached
