"""Deterministic train/val/test splits, stratified by class and SNR.

Stratifying by (class, SNR) matters for modulation recognition: accuracy is reported per
SNR, and a split that happened to hold few low-SNR frames of one class would bias it.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import ConfigError

# A cell needs one frame per split; smaller cells go to train first, then test.
_MIN_CELL_FOR_ALL_SPLITS = 3


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ConfigError unless both fractions are in [0, 1) and leave training data."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no training data",
            hint="keep their sum below 1, e.g. 0.1 and 0.2",
        )


def rank_within_strata(strata: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random order inside each stratum.

    Args:
        strata: int [N], stratum id of each item (any integers).
        rng: the source of randomness; the result is a function of its state.

    Returns:
        rank int64 [N] (0..size-1, a random permutation within each stratum) and
        size int64 [N] (the number of items in the item's stratum).
    """
    strata = np.asarray(strata)
    _, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # A permutation as tie-free sort key: lexsort orders by stratum, then randomly inside it.
    order = np.lexsort((rng.permutation(len(strata)), inverse))
    group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(strata), dtype=np.int64)
    rank[order] = np.arange(len(strata)) - group_start[inverse[order]]
    return rank, counts[inverse].astype(np.int64)


def _share(size: np.ndarray, fraction: float) -> np.ndarray:
    """Items of each cell that go to a split: rounded half up, at least one when the cell is big enough."""
    n = np.floor(size * fraction + 0.5).astype(np.int64)
    if fraction > 0:
        n = np.where(size >= _MIN_CELL_FOR_ALL_SPLITS, np.maximum(n, 1), n)
    return n


def assign_splits(
    y: np.ndarray,
    snr: np.ndarray | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Split code per frame, int8 [N] (0 train, 1 val, 2 test), stratified by (class, SNR).

    Each (class, SNR) cell (class alone when ``snr`` is None) is shuffled with ``seed`` and
    cut by the fractions, rounded half up. A cell of at least 3 frames gets at least one frame
    in every split with a positive fraction; every non-empty cell keeps at least one training
    frame. Same inputs and seed give the same codes.
    """
    check_fractions(val_fraction, test_fraction)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if snr is not None:
        snr = np.asarray(snr, dtype=np.int64).reshape(-1)
        if snr.shape != y.shape:
            raise ConfigError(f"snr has {len(snr)} entries but y has {len(y)}")
    if len(y) == 0:
        return np.zeros(0, dtype=np.int8)
    cell = y if snr is None else np.unique(np.stack([y, snr], axis=1), axis=0, return_inverse=True)[1]
    rank, size = rank_within_strata(np.asarray(cell).reshape(-1), np.random.default_rng(seed))
    n_test = np.minimum(_share(size, test_fraction), size - 1)
    n_val = np.minimum(_share(size, val_fraction), size - 1 - n_test)
    split = np.zeros(len(y), dtype=np.int8)
    split[rank < n_test] = 2
    split[(rank >= n_test) & (rank < n_test + n_val)] = 1
    return split
