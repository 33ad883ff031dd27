"""load_dataset: every source through one typed spec, as a recipe's data section names it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgekd import resources
from edgekd.config import from_dict, load_yaml
from edgekd.data.dataset import ArrayDataset
from edgekd.data.sources import BUILT_IN_SOURCES, DATA_SOURCES, DataSpec, load_dataset
from edgekd.errors import ConfigError, InputFileError, ShapeError

TINY_SYNTHETIC = {"classes": ["BPSK", "QPSK"], "snr_min": 0, "snr_max": 4, "snr_step": 4, "frame_length": 32}


def _spec(data: dict) -> DataSpec:
    return from_dict(DataSpec, data, "data")


def test_every_built_in_source_has_a_loader():
    assert set(BUILT_IN_SOURCES) <= set(DATA_SOURCES.names())


def test_the_builtin_recipe_data_section_still_loads():
    section = load_yaml(resources.resolve("recipes", "modrec"))["data"]
    spec = _spec(section)
    assert spec.source == "synthetic_modulation" and spec.synthetic.frames_per_class_snr == 100


def test_synthetic_and_npz_round_trip(tmp_path):
    ds = load_dataset(_spec({"synthetic": {**TINY_SYNTHETIC, "frames_per_class_snr": 5}}))
    assert ds.x.shape == (20, 2, 32) and ds.split is not None
    ds.save_npz(tmp_path / "d.npz")
    again = load_dataset(_spec({"source": "npz", "path": "d.npz"}), resolve=lambda p: tmp_path / p)
    assert np.array_equal(again.x, ds.x) and np.array_equal(again.split, ds.split)


def test_rml2016_options_reach_the_loader(tmp_path):
    rng = np.random.default_rng(0)
    table = {(m, s): rng.standard_normal((5, 2, 16)).astype(np.float32) for m in ("A", "B") for s in (0, 2)}
    (tmp_path / "r.pkl").write_bytes(pickle.dumps(table, protocol=2))
    spec = _spec(
        {
            "source": "rml2016",
            "path": str(tmp_path / "r.pkl"),
            "rml2016": {"classes": ["B", "A"], "snrs": [2]},
        }
    )
    ds = load_dataset(spec)
    assert ds.class_names == ["B", "A"] and np.array_equal(ds.x[:5], table[("B", 2)])
    assert np.array_equal(ds.x[5:], table[("A", 2)]) and ds.y.tolist() == [0] * 5 + [1] * 5


def test_rml2018_options_reach_the_loader(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is not installed")
    y = np.repeat(np.arange(3), 8)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["X"] = np.random.default_rng(0).standard_normal((24, 16, 2)).astype(np.float32)
        f["Y"] = np.eye(3)[y]
        f["Z"] = np.tile([[0], [10]], (12, 1))
    spec = _spec(
        {
            "source": "rml2018",
            "path": str(tmp_path / "r.h5"),
            "rml2018": {"class_names": ["a", "b", "c"], "classes": ["c", "a"], "max_frames_per_cell": 3},
        }
    )
    ds = load_dataset(spec)
    assert ds.class_names == ["c", "a"] and ds.input_shape == (2, 16) and len(ds) == 2 * 2 * 3


def test_imagefolder_options_reach_the_loader(tmp_path):
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    for name in ("CNV", "NORMAL"):
        for i in range(4):
            (tmp_path / "oct" / name).mkdir(parents=True, exist_ok=True)
            image.new("L", (12, 10), 30 * i).save(tmp_path / "oct" / name / f"{i}.png")
    spec = _spec(
        {
            "source": "imagefolder",
            "path": "oct",
            "imagefolder": {"image_size": 8, "resize": 8, "val_fraction": 0.25, "test_fraction": 0.25},
        }
    )
    ds = load_dataset(spec, resolve=lambda p: tmp_path / p)
    assert isinstance(ds, ArrayDataset) and ds.x.shape == (8, 3, 8, 8)
    assert ds.class_names == ["CNV", "NORMAL"] and np.bincount(ds.split).tolist() == [4, 2, 2]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"source": "rml2016"}, "data.path is empty"),
        ({"source": "rml2081", "path": "x"}, "did you mean 'rml2018'"),
        ({"rml2018": {"max_frames": 3}}, "did you mean 'max_frames_per_cell'"),
        ({"imagefolder": {"image_size": 300}}, "image_size <= resize"),
        ({"rml2016": {"val_fraction": 0.9, "test_fraction": 0.2}}, "no training data"),
    ],
)
def test_bad_specs_are_config_errors(data, fragment):
    with pytest.raises(ConfigError) as info:
        _spec(data)
    assert fragment in info.value.one_line()


def test_missing_path_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_dataset(_spec({"source": "rml2018", "path": str(tmp_path / "none.h5")}))


@pytest.mark.parametrize(
    ("synthetic", "fragment"),
    [
        ({"frames_per_class_snr": 2}, "synthetic data (data.synthetic): the 'val' split is empty"),
        ({"frames_per_class_snr": 3, "val_fraction": 0.0}, "the 'val' split is empty"),
        ({"classes": ["BPSK"]}, "holds 1 class; a classifier needs at least 2"),
    ],
)
def test_a_dataset_training_cannot_use_is_refused_when_built(synthetic, fragment):
    with pytest.raises(InputFileError) as info:
        load_dataset(_spec({"synthetic": {**TINY_SYNTHETIC, "frames_per_class_snr": 5, **synthetic}}))
    assert fragment in info.value.one_line()


def test_split_cut_by_a_cap_is_refused_naming_the_file(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is not installed")
    y = np.repeat(np.arange(3), 8)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["X"] = np.random.default_rng(0).standard_normal((24, 16, 2)).astype(np.float32)
        f["Y"] = np.eye(3)[y]
        f["Z"] = np.tile([[0], [10]], (12, 1))
    spec = _spec(
        {
            "source": "rml2018",
            "path": str(tmp_path / "r.h5"),
            "rml2018": {"class_names": ["a", "b", "c"], "max_frames_per_cell": 2},
        }
    )
    with pytest.raises(InputFileError) as info:
        load_dataset(spec)
    assert f"RadioML 2018 file {tmp_path / 'r.h5'}: the 'val' split is empty" in info.value.one_line()
    assert "max_frames_per_cell" in info.value.one_line()


def test_frames_of_another_shape_than_the_recipe_expects_are_refused(tmp_path):
    ds = load_dataset(_spec({"synthetic": {**TINY_SYNTHETIC, "frames_per_class_snr": 5}}))
    ds.save_npz(tmp_path / "d.npz")
    spec = _spec({"source": "npz", "path": str(tmp_path / "d.npz"), "input_shape": [2, 128]})
    with pytest.raises(ShapeError) as info:
        load_dataset(spec)
    assert "[2, 32] but the recipe expects [2, 128]" in info.value.one_line()
    assert str(tmp_path / "d.npz") in info.value.one_line()
    assert load_dataset(_spec({"source": "npz", "path": str(tmp_path / "d.npz"), "input_shape": [2, 32]}))
    with pytest.raises(ConfigError, match="not the shape of one frame"):
        _spec({"input_shape": [2, 0]})


@pytest.mark.parametrize(
    ("synthetic", "fragment"),
    [
        ({"snr_min": -40000}, "beyond ±100 dB"),
        ({"samples_per_symbol": 64}, "samples_per_symbol must be in 2..frame_length (32)"),
        ({"cfo_walk_std": float("nan")}, "cfo_walk_std must be a finite number"),
        ({"frames_per_class_snr": 10**12}, "would take"),
    ],
)
def test_synthetic_settings_that_cannot_work_are_config_errors(synthetic, fragment):
    with pytest.raises(ConfigError) as info:
        load_dataset(_spec({"synthetic": {**TINY_SYNTHETIC, **synthetic}}))
    assert fragment in info.value.one_line()
