"""Stratified, deterministic train/val/test splits."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.dataset import SPLITS
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.data.splits import assign_splits, rank_within_strata
from edgekd.errors import ConfigError


def _grid(classes: int = 4, snrs: int = 5, per_cell: int = 40) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(classes), snrs * per_cell)
    snr = np.tile(np.repeat(np.arange(-10, -10 + 2 * snrs, 2), per_cell), classes)
    return y, snr


def test_every_cell_is_cut_by_the_fractions():
    y, snr = _grid()
    split = assign_splits(y, snr, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert split.dtype == np.int8 and split.shape == y.shape
    for c in range(4):
        for s in np.unique(snr):
            counts = np.bincount(split[(y == c) & (snr == s)], minlength=3)
            assert counts.tolist() == [28, 4, 8]


def test_frames_are_shuffled_inside_a_cell():
    y, snr = _grid()
    split = assign_splits(y, snr, 0.1, 0.2, seed=0)
    first_cell = split[:40]
    assert not np.array_equal(first_cell, np.sort(first_cell))  # not simply cut in order
    assert not np.array_equal(first_cell, np.sort(first_cell)[::-1])


def test_deterministic_by_seed():
    y, snr = _grid()
    a, b = assign_splits(y, snr, 0.1, 0.2, seed=5), assign_splits(y, snr, 0.1, 0.2, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, assign_splits(y, snr, 0.1, 0.2, seed=6))


@pytest.mark.parametrize(
    ("size", "expected"), [(1, [1, 0, 0]), (2, [2, 0, 0]), (3, [1, 1, 1]), (5, [3, 1, 1])]
)
def test_small_cells_keep_training_data_and_fill_splits_when_they_can(size, expected):
    split = assign_splits(np.zeros(size, dtype=np.int64), np.zeros(size), 0.1, 0.2, seed=0)
    assert np.bincount(split, minlength=3).tolist() == expected


def test_without_snr_stratifies_by_class():
    y = np.repeat([0, 1, 2], [10, 20, 50])
    split = assign_splits(y, None, 0.1, 0.2, seed=1)
    for c, (val, test) in enumerate([(1, 2), (2, 4), (5, 10)]):
        counts = np.bincount(split[y == c], minlength=3)
        assert counts[1] == val and counts[2] == test


def test_zero_fraction_gives_an_empty_split():
    y, snr = _grid(per_cell=10)
    split = assign_splits(y, snr, 0.0, 0.2, seed=0)
    assert not np.any(split == 1) and np.sum(split == 2) == len(y) * 0.2


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.1, 1.0)])
def test_bad_fractions_are_config_errors(val, test):
    with pytest.raises(ConfigError):
        assign_splits(np.zeros(10, dtype=np.int64), None, val, test, seed=0)


def test_rank_within_strata_is_a_permutation_per_stratum():
    strata = np.array([7, 3, 7, 7, 3, 9])
    rank, size = rank_within_strata(strata, np.random.default_rng(0))
    assert size.tolist() == [3, 2, 3, 3, 2, 1]
    for value in (3, 7, 9):
        assert sorted(rank[strata == value].tolist()) == list(range(int(np.sum(strata == value))))


def test_generated_splits_partition_the_frames_without_shared_frames():
    cfg = SyntheticModulationConfig(classes=["BPSK", "GFSK"], snr_min=0, snr_max=4, frames_per_class_snr=10)
    ds = generate_modulation_dataset(cfg)
    parts = [ds.split_indices(name) for name in SPLITS]
    assert sum(len(p) for p in parts) == len(ds)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(ds)))
    seen = [{row.tobytes() for row in ds.x[p]} for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for name in SPLITS:  # every (class, SNR) cell in every split
        sub = ds.subset(name)
        assert len(np.unique(np.stack([sub.y, sub.snr], axis=1), axis=0)) == 2 * 3
