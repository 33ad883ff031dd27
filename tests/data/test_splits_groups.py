"""Splits by group (#20): frames of one burst or patient never straddle train/val/test, and a
separate test file becomes the whole test split."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.config import from_dict
from edgekd.data.dataset import load_npz
from edgekd.data.images import ImageFolder
from edgekd.data.lazy_arrays import ArrayFileDataset
from edgekd.data.mapstyle import MemoryDataset
from edgekd.data.sources import DataSpec, load_dataset
from edgekd.data.splits import assign_group_splits, assign_splits, burst_groups
from edgekd.data.storage import open_map_dataset
from edgekd.errors import ConfigError, InputFileError, ShapeError


def _one_split_per_group(split: np.ndarray, group: np.ndarray) -> bool:
    return all(len(np.unique(split[group == g])) == 1 for g in np.unique(group))


def _spec(data: dict) -> DataSpec:
    return from_dict(DataSpec, data, "data")


# --- edgekd.data.splits -----------------------------------------------------------------------


def test_groups_never_straddle_and_strata_are_cut_in_groups():
    rng = np.random.default_rng(0)
    group = rng.integers(0, 60, size=900)  # 60 patients, frames interleaved
    y = group % 3  # each patient has one class: 20 patients per class
    split = assign_group_splits(group, y, None, 0.1, 0.2, seed=4)
    assert _one_split_per_group(split, group)
    for label in range(3):
        per_group = [split[group == g][0] for g in np.unique(group[y == label])]
        assert np.bincount(per_group, minlength=3).tolist() == [14, 2, 4]
    assert not _one_split_per_group(assign_splits(y, None, 0.1, 0.2, seed=4), group)  # frame-level parts them


def test_string_keys_seeds_and_one_frame_groups():
    group = np.array([f"p{i // 3}" for i in range(300)])
    y = np.arange(300) // 150
    a = assign_group_splits(group, y, seed=1)
    np.testing.assert_array_equal(a, assign_group_splits(group, y, seed=1))
    assert not np.array_equal(a, assign_group_splits(group, y, seed=2))
    snr = np.tile([0, 10], 150)
    np.testing.assert_array_equal(assign_group_splits(np.arange(300), y, snr), assign_splits(y, snr))


def test_a_group_of_mixed_classes_goes_where_its_majority_stratum_goes():
    group = np.array([0, 0, 0, 1, 2, 3, 4, 5])
    y = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    split = assign_group_splits(group, y, None, 0.0, 0.5, seed=0)
    assert _one_split_per_group(split, group) and split.dtype == np.int8


def test_bursts_are_contiguous_blocks_within_each_cell():
    cell = np.repeat([7, 3], [45, 8])  # a cell of 45 frames and one of 8
    bursts = burst_groups(cell, burst_frames=4)
    first = bursts[:45]
    assert np.all(np.diff(first) >= 0) and np.bincount(first - first[0]).max() <= 4
    assert len(np.unique(first)) == 12  # ceil(45 / 4)
    assert len(np.unique(bursts[45:])) == 8  # under 10 bursts of 4: one frame each
    assert not set(first) & set(bursts[45:])
    with pytest.raises(ConfigError, match="burst_frames"):
        burst_groups(cell, 0)


# --- npz files with a group array ---------------------------------------------------------------


def _write_npz(path, n: int = 240, *, group=True, split=None, classes=("a", "b"), length: int = 16, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.standard_normal((n, 2, length)).astype(np.float32),
        "y": np.arange(n) % len(classes),
        "class_names": np.array(classes),
    }
    if group:
        arrays["group"] = np.array([f"burst{i // 8}-{i % len(classes)}" for i in range(n)])
    if split is not None:
        arrays["split"] = split
    np.savez(path, **arrays)
    return arrays


def test_an_npz_without_split_is_split_by_its_group_array(tmp_path):
    arrays = _write_npz(tmp_path / "d.npz")
    ds = load_npz(tmp_path / "d.npz")
    assert ds.split is not None and _one_split_per_group(ds.split, arrays["group"])
    assert np.bincount(ds.split, minlength=3).tolist() == [168, 24, 48]  # 30 groups: 21/3/6
    lazy = ArrayFileDataset(tmp_path / "d.npz")  # the memory-mapped reader draws the same split
    np.testing.assert_array_equal(lazy.split, ds.split)
    staged = load_dataset(_spec({"source": "npz", "path": "d.npz"}), resolve=lambda p: tmp_path / p)
    np.testing.assert_array_equal(staged.split, ds.split)


def test_an_npz_split_array_wins_over_its_group_array(tmp_path):
    split = (np.arange(240) % 3).astype(np.int8)
    _write_npz(tmp_path / "d.npz", split=split)
    np.testing.assert_array_equal(load_npz(tmp_path / "d.npz").split, split)


def test_an_npz_with_neither_split_nor_group_is_still_refused_for_training(tmp_path):
    _write_npz(tmp_path / "d.npz", group=False)
    assert load_npz(tmp_path / "d.npz").split is None  # bench scores such a file whole
    with pytest.raises(InputFileError, match="has no split labels"):
        load_dataset(_spec({"source": "npz", "path": "d.npz"}), resolve=lambda p: tmp_path / p)


def test_a_group_array_of_the_wrong_shape_is_one_line(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 2, 4), np.float32), y=np.arange(6) % 2, group=np.arange(5))
    with pytest.raises(InputFileError, match=r"group has shape \[5\]; expected \[6\]"):
        load_npz(tmp_path / "d.npz")


# --- image folders: group by patient ------------------------------------------------------------


def _oct_names(root, classes=("CNV", "NORMAL"), patients: int = 12, scans: int = 4):
    """OCT2017-style names CLASS-PATIENT-INDEX.jpeg (listed only, never decoded here)."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for p in range(patients):
            for i in range(scans):
                (root / name / f"{name}-{1000 + 100 * c + p}-{i}.jpeg").write_bytes(b"not decoded")


def _patients(folder: ImageFolder) -> np.ndarray:
    return np.array([f.name.split("-")[1] for f in folder.files])


def test_a_flat_folder_is_split_by_patient(tmp_path):
    _oct_names(tmp_path)
    folder = ImageFolder(tmp_path, group="patient")
    assert _one_split_per_group(folder.split, _patients(folder))
    # 12 patients per class go 9/1/2, each with its 4 scans
    assert np.bincount(folder.split, minlength=3).tolist() == [2 * 9 * 4, 2 * 1 * 4, 2 * 2 * 4]
    assert not _one_split_per_group(ImageFolder(tmp_path).split, _patients(ImageFolder(tmp_path)))


def test_val_carved_from_train_keeps_patients_together(tmp_path):
    _oct_names(tmp_path / "train")
    _oct_names(tmp_path / "test", patients=2)
    spec = {"imagefolder": {"group": "patient", "val_fraction": 0.25}}
    folder = _spec({"source": "imagefolder", "path": str(tmp_path), **spec}).imagefolder.open_folder(tmp_path)
    train_val = folder.split != 2
    assert _one_split_per_group(folder.split[train_val], _patients(folder)[train_val])
    assert (folder.split == 1).sum() == 2 * 3 * 4  # 3 of each class's 12 patients


def test_a_regex_names_the_group_and_a_name_it_misses_is_one_line(tmp_path):
    _oct_names(tmp_path)
    folder = ImageFolder(tmp_path, group=r"-(\d+)-")
    assert _one_split_per_group(folder.split, _patients(folder))
    (tmp_path / "CNV" / "stray.jpeg").write_bytes(b"x")
    with pytest.raises(InputFileError, match=r"stray.jpeg: its name does not match the group pattern"):
        ImageFolder(tmp_path, group="patient")
    with pytest.raises(ConfigError, match="is not a valid regex"):
        _spec({"source": "imagefolder", "path": "p", "imagefolder": {"group": "(unclosed"}}).validate()


# --- data.test_path ---------------------------------------------------------------------------------


def test_a_test_file_becomes_the_test_split_and_the_main_file_train_and_val(tmp_path):
    arrays = _write_npz(tmp_path / "main.npz")
    test = _write_npz(tmp_path / "test.npz", n=30, group=False, classes=("b", "a"), seed=1)
    spec = _spec({"source": "npz", "path": "main.npz", "test_path": "test.npz"})
    ds = load_dataset(spec, resolve=lambda p: tmp_path / p)
    assert np.bincount(ds.split, minlength=3).tolist() == [216, 24, 30]  # groups: 27/3, no test
    assert _one_split_per_group(ds.split[:240], arrays["group"])
    np.testing.assert_array_equal(ds.x[240:], test["x"])
    assert ds.class_names == ["a", "b"] and ds.y[240:].tolist() == (1 - test["y"]).tolist()  # by name
    memory = open_map_dataset(spec, resolve=lambda p: tmp_path / p)
    assert isinstance(memory, MemoryDataset) and len(memory) == 270


def test_the_data_stage_writes_the_joined_splits_for_an_npz_with_a_test_file(tmp_path):
    from edgekd.pipeline.data_stage import stage_data

    _write_npz(tmp_path / "main.npz")
    test = _write_npz(tmp_path / "test.npz", n=30, group=False, classes=("b", "a"), seed=1)
    spec = _spec({"source": "npz", "path": "main.npz", "test_path": "test.npz"})
    out = tmp_path / "run"
    out.mkdir()
    written = load_npz(stage_data(spec, out, lambda p: tmp_path / p))
    assert np.bincount(written.split, minlength=3).tolist() == [216, 24, 30]
    np.testing.assert_array_equal(written.subset("test").x, test["x"])


def test_a_main_file_without_split_or_group_is_drawn_train_and_val(tmp_path):
    _write_npz(tmp_path / "main.npz", group=False)
    _write_npz(tmp_path / "test.npz", n=10, group=False)
    ds = load_dataset(
        _spec({"source": "npz", "path": "main.npz", "test_path": "test.npz"}), resolve=lambda p: tmp_path / p
    )
    assert np.bincount(ds.split, minlength=3).tolist() == [216, 24, 10]


@pytest.mark.parametrize(
    ("main", "test", "error", "message"),
    [
        ({}, {"length": 32}, ShapeError, r"frames of shape \[2, 32\] but dataset .* holds \[2, 16\]"),
        ({}, {"classes": ("a", "c")}, InputFileError, "holds class 'c', which dataset .* lacks"),
        ({"split": np.full(240, 2, np.int8)}, {}, ConfigError, "holds 240 test frames of its own"),
    ],
)
def test_mismatched_test_files_are_one_line(tmp_path, main, test, error, message):
    _write_npz(tmp_path / "main.npz", **main)
    _write_npz(tmp_path / "test.npz", n=10, **test)
    spec = _spec({"source": "npz", "path": "main.npz", "test_path": "test.npz"})
    with pytest.raises(error, match=message):
        load_dataset(spec, resolve=lambda p: tmp_path / p)


def test_test_path_cannot_be_the_main_file_generated_data_or_lazy(tmp_path):
    _write_npz(tmp_path / "main.npz")
    same = _spec({"source": "npz", "path": "main.npz", "test_path": str(tmp_path / "main.npz")})
    with pytest.raises(ConfigError, match=r"is data.path itself"):
        load_dataset(same, resolve=lambda p: tmp_path / p)
    with pytest.raises(ConfigError, match="synthetic data has no file"):
        _spec({"test_path": "t.npz"}).validate()
    with pytest.raises(ConfigError, match=r"data.storage is 'lazy'"):
        _spec({"source": "npz", "path": "m.npz", "test_path": "t.npz", "storage": "lazy"}).validate()
    spec = _spec({"source": "npz", "path": "main.npz", "test_path": "main2.npz"})
    with pytest.raises(InputFileError, match=r"data.test_path .*main2.npz does not exist"):
        load_dataset(spec, resolve=lambda p: tmp_path / p)
