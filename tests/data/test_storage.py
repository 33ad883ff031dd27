"""In memory or lazy by size, with an override; the same checks either way."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import storage
from edgekd.data.lazy_arrays import ArrayFileDataset, CompressedArrayError
from edgekd.data.lazy_images import LazyImageFolder
from edgekd.data.lazy_rml2018 import RML2018Dataset
from edgekd.data.mapstyle import MemoryDataset
from edgekd.data.modulation import SyntheticModulationConfig
from edgekd.data.sources import DataSpec
from edgekd.data.storage import choose_storage, open_map_dataset
from edgekd.errors import ConfigError, InputFileError, ShapeError
from tests.data.test_lazy_rml2018 import write_rml

GIB = 1 << 30


def test_choose_storage_by_size_with_override(monkeypatch):
    monkeypatch.setattr(storage, "physical_memory", lambda: 16 * GIB)
    assert choose_storage(4 * GIB) == "memory" and choose_storage(4 * GIB + 1) == "lazy"
    assert choose_storage(GIB, memory_fraction=0.05) == "lazy"
    assert choose_storage(100 * GIB, "memory") == "memory" and choose_storage(1, "lazy") == "lazy"
    monkeypatch.setattr(storage, "physical_memory", lambda: None)
    assert choose_storage(2 * GIB) == "memory" and choose_storage(3 * GIB) == "lazy"
    with pytest.raises(ConfigError, match="unknown storage 'disk'"):
        choose_storage(1, "disk")


def test_sources_open_lazy_or_in_memory(tmp_path, monkeypatch):
    rml = tmp_path / "r.hdf5"
    write_rml(rml)
    spec = DataSpec(source="rml2018", path=str(rml), input_shape=[2, 32])
    small = open_map_dataset(spec)
    assert isinstance(small, MemoryDataset)  # a few KB: in memory
    lazy = open_map_dataset(spec, storage="lazy")
    assert isinstance(lazy, RML2018Dataset)
    np.testing.assert_array_equal(lazy.to_array_dataset().x, small.data.x)
    monkeypatch.setattr(
        storage, "physical_memory", lambda: 4 * lazy.nbytes - 1
    )  # a quarter of RAM is too little
    assert isinstance(open_map_dataset(spec), RML2018Dataset)
    monkeypatch.undo()
    with pytest.raises(ShapeError, match=r"\[2, 64\]"):
        open_map_dataset(DataSpec(source="rml2018", path=str(rml), input_shape=[2, 64]), storage="lazy")

    npz = tmp_path / "d.npz"
    small.data.save_npz(npz)
    assert isinstance(
        open_map_dataset(DataSpec(source="npz", path=str(npz)), storage="lazy"), ArrayFileDataset
    )
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, x=small.data.x, y=small.data.y, split=small.data.split)
    assert isinstance(open_map_dataset(DataSpec(source="npz", path=str(packed))), MemoryDataset)
    with pytest.raises(CompressedArrayError):
        open_map_dataset(DataSpec(source="npz", path=str(packed)), storage="lazy")
    np.savez(tmp_path / "nosplit.npz", x=small.data.x, y=small.data.y)
    with pytest.raises(InputFileError, match="no split labels"):
        open_map_dataset(DataSpec(source="npz", path=str(tmp_path / "nosplit.npz")), storage="lazy")


def test_image_folder_and_memory_only_sources(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for name in ("a", "b"):
        for i in range(4):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.new("L", (12, 10), 30 * i).save(tmp_path / name / f"{i}.png")
    spec = DataSpec(source="imagefolder", path=str(tmp_path))
    spec.imagefolder.image_size, spec.imagefolder.resize = 8, 8
    lazy = open_map_dataset(spec, storage="lazy")
    assert isinstance(lazy, LazyImageFolder)
    np.testing.assert_allclose(lazy.to_array_dataset().x, open_map_dataset(spec).data.x, atol=1e-6)
    demo = DataSpec(
        synthetic=SyntheticModulationConfig(frames_per_class_snr=4, snr_min=0, snr_max=10, snr_step=10)
    )
    assert isinstance(open_map_dataset(demo), MemoryDataset)
    with pytest.raises(ConfigError, match="no lazy form"):
        open_map_dataset(demo, storage="lazy")
