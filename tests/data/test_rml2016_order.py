"""RadioML 2016 (#20): label order as in the file, splits by burst, a separate test file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgekd.config import from_dict
from edgekd.data.rml2016 import load_rml2016
from edgekd.data.sources import DataSpec, load_dataset
from edgekd.data.splits import assign_splits
from edgekd.errors import ConfigError, InputFileError, ShapeError

FILE_ORDER = ("QPSK", "BPSK", "WBFM")  # not sorted: the order label ids follow


def _write(path, mods=FILE_ORDER, snrs=(0, 10), per_cell: int = 8, length: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (per_cell, 2, length)
    table = {(m, s): rng.standard_normal(shape).astype(np.float32) for m in mods for s in snrs}
    path.write_bytes(pickle.dumps(table, protocol=2))
    return table


def _spec(data: dict) -> DataSpec:
    return from_dict(DataSpec, data, "data")


def test_labels_follow_the_files_order_of_modulations(tmp_path):
    table = _write(tmp_path / "r.pkl")
    ds = load_rml2016(tmp_path / "r.pkl")
    assert ds.class_names == list(FILE_ORDER)  # sorted would be BPSK, QPSK, WBFM
    np.testing.assert_array_equal(ds.x[ds.y == 0][:8], table[("QPSK", 0)])


def test_listing_the_classes_keeps_the_sorted_order_of_earlier_versions(tmp_path):
    table = _write(tmp_path / "r.pkl")
    spec = _spec({"source": "rml2016", "path": "r.pkl", "rml2016": {"classes": sorted(FILE_ORDER)}})
    ds = load_dataset(spec, resolve=lambda p: tmp_path / p)
    assert ds.class_names == ["BPSK", "QPSK", "WBFM"]
    np.testing.assert_array_equal(ds.x[ds.y == 0][:8], table[("BPSK", 0)])


def _bursts_of(ds, burst: int) -> dict[tuple[int, int, int], set[int]]:
    """Split codes seen in each (class, SNR, block of ``burst`` frames in file order)."""
    seen: dict[tuple[int, int, int], set[int]] = {}
    for label in range(ds.num_classes):
        for snr in np.unique(ds.snr):
            codes = ds.split[(ds.y == label) & (ds.snr == snr)]  # frames keep their file order
            for k, code in enumerate(codes):
                seen.setdefault((label, int(snr), k // burst), set()).add(int(code))
    return seen


def test_no_burst_spans_two_splits(tmp_path):
    _write(tmp_path / "r.pkl", per_cell=200)
    spec = _spec({"source": "rml2016", "path": "r.pkl", "rml2016": {"burst_frames": 20}})
    ds = load_dataset(spec, resolve=lambda p: tmp_path / p)
    seen = _bursts_of(ds, 20)
    assert len(seen) == 3 * 2 * 10 and all(len(codes) == 1 for codes in seen.values())
    for label in range(3):  # each cell's 10 bursts go 7/1/2, so its frames 140/20/40
        for snr in (0, 10):
            counts = np.bincount(ds.split[(ds.y == label) & (ds.snr == snr)], minlength=3)
            assert counts.tolist() == [140, 20, 40]
    # The frame-level split of earlier versions parts bursts, which the check above catches.
    ds.split = assign_splits(ds.y, ds.snr, 0.1, 0.2, 0)
    assert any(len(codes) > 1 for codes in _bursts_of(ds, 20).values())


def test_default_bursts_split_the_published_cell_size_70_10_20(tmp_path):
    _write(tmp_path / "r.pkl", mods=("QPSK", "BPSK"), snrs=(0,), per_cell=1000, length=4)
    ds = load_rml2016(tmp_path / "r.pkl")
    assert all(len(codes) == 1 for codes in _bursts_of(ds, 100).values())
    assert np.bincount(ds.split[ds.y == 0], minlength=3).tolist() == [700, 100, 200]


def test_burst_frames_1_is_the_frame_level_split(tmp_path):
    _write(tmp_path / "r.pkl", per_cell=30)
    ds = load_rml2016(tmp_path / "r.pkl", burst_frames=1, seed=3)
    np.testing.assert_array_equal(ds.split, assign_splits(ds.y, ds.snr, 0.1, 0.2, 3))


def test_small_cells_are_cut_into_enough_bursts_for_every_split(tmp_path):
    _write(tmp_path / "r.pkl", per_cell=8)  # far below burst_frames: 8 bursts of one frame
    ds = load_rml2016(tmp_path / "r.pkl")
    assert np.bincount(ds.split, minlength=3).min() > 0


def test_a_bad_burst_size_is_one_line():
    with pytest.raises(ConfigError, match="burst_frames must be 1 or more"):
        _spec({"source": "rml2016", "path": "r.pkl", "rml2016": {"burst_frames": 0}}).validate()


def test_a_separate_test_file_is_the_whole_test_split(tmp_path):
    _write(tmp_path / "train.pkl", per_cell=20)
    test_table = _write(tmp_path / "test.pkl", mods=("WBFM", "QPSK"), per_cell=5, seed=1)
    spec = _spec({"source": "rml2016", "path": "train.pkl", "test_path": "test.pkl"})
    ds = load_dataset(spec, resolve=lambda p: tmp_path / p)
    test = ds.subset("test")
    assert len(test) == 20 and np.bincount(ds.split, minlength=3)[:2].sum() == 120
    assert ds.class_names == list(FILE_ORDER)  # the training file's order; the test file's mapped
    wbfm = test.x[(test.y == FILE_ORDER.index("WBFM")) & (test.snr == 0)]
    np.testing.assert_array_equal(wbfm, test_table[("WBFM", 0)])


def test_a_test_file_of_another_frame_length_or_class_is_refused(tmp_path):
    _write(tmp_path / "train.pkl", mods=("QPSK", "BPSK"))
    _write(tmp_path / "long.pkl", mods=("QPSK", "BPSK"), length=32)
    _write(tmp_path / "other.pkl", mods=("QPSK", "AM-DSB"))
    spec = {"source": "rml2016", "path": "train.pkl"}
    with pytest.raises(ShapeError, match=r"frames of shape \[2, 32\] but .* holds \[2, 16\]"):
        load_dataset(_spec({**spec, "test_path": "long.pkl"}), resolve=lambda p: tmp_path / p)
    with pytest.raises(InputFileError, match=r"holds class 'AM-DSB', which .* lacks"):
        load_dataset(_spec({**spec, "test_path": "other.pkl"}), resolve=lambda p: tmp_path / p)
