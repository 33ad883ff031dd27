"""Deterministic train/val/test splits, stratified by class and SNR.

Stratifying by (class, SNR) matters for modulation recognition: accuracy is reported per
SNR, and a split that happened to hold few low-SNR frames of one class would bias it.
Frames that are alike (neighbours cut from one capture, scans of one patient) are split as
groups (:func:`assign_group_splits`, :func:`burst_groups`): a random split of the frames
would put near-copies of training frames in val and test.
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


def class_snr_cells(y: np.ndarray, snr: np.ndarray | None) -> np.ndarray:
    """int64 [N]: the (class, SNR) cell of each frame (the class alone without SNR labels)."""
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if snr is None:
        return y
    pairs = np.stack([y, np.asarray(snr, dtype=np.int64).reshape(-1)], axis=1)
    return np.asarray(np.unique(pairs, axis=0, return_inverse=True)[1]).reshape(-1)


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
    rank, size = rank_within_strata(class_snr_cells(y, snr), np.random.default_rng(seed))
    n_test = np.minimum(_share(size, test_fraction), size - 1)
    n_val = np.minimum(_share(size, val_fraction), size - 1 - n_test)
    split = np.zeros(len(y), dtype=np.int8)
    split[rank < n_test] = 2
    split[(rank >= n_test) & (rank < n_test + n_val)] = 1
    return split


def _first_seen_ids(keys: np.ndarray) -> np.ndarray:
    """int64 [N] id of each key, numbered in the order keys first appear (ints or strings)."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique's sorted ids -> first-appearance ids
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[np.asarray(inverse).reshape(-1)]


def _group_strata(group: np.ndarray, cell: np.ndarray, n_groups: int) -> np.ndarray:
    """int64 [G]: each group's most frequent cell (ties: the lowest cell id)."""
    pairs, counts = np.unique(group * (int(cell.max()) + 1) + cell, return_counts=True)
    g, c = np.divmod(pairs, int(cell.max()) + 1)
    order = np.lexsort((c, -counts, g))  # per group: most frequent first, then lowest cell
    g, c = g[order], c[order]
    first = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    strata = np.empty(n_groups, dtype=np.int64)
    strata[g[first]] = c[first]
    return strata


def assign_group_splits(
    group: np.ndarray,
    y: np.ndarray,
    snr: np.ndarray | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Split codes int8 [N] (0 train, 1 val, 2 test) that never part a group.

    Frames sharing a ``group`` key (a capture burst, a patient id; ints or strings) all go to
    one split. Groups, not frames, are drawn: each group is stratified by its most frequent
    (class, SNR) cell (class alone when ``snr`` is None) and :func:`assign_splits` cuts each
    stratum by the fractions, counted in groups. A stratum of at least 3 groups gets a group in
    every split with a positive fraction. With one group per frame, in frame order, the codes
    equal ``assign_splits(y, snr, ...)``'s.
    """
    check_fractions(val_fraction, test_fraction)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    group = np.asarray(group).reshape(-1)
    if group.shape != y.shape:
        raise ConfigError(f"group has {len(group)} entries but y has {len(y)}")
    if len(y) == 0:
        return np.zeros(0, dtype=np.int8)
    if snr is not None and np.asarray(snr).size != len(y):
        raise ConfigError(f"snr has {np.asarray(snr).size} entries but y has {len(y)}")
    ids = _first_seen_ids(group)
    keys = y if snr is None else np.stack([y, np.asarray(snr, dtype=np.int64).reshape(-1)], axis=1)
    cell = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_groups = int(ids.max()) + 1
    per_group = assign_splits(_group_strata(ids, cell, n_groups), None, val_fraction, test_fraction, seed)
    return per_group[ids]


def burst_groups(cell: np.ndarray, burst_frames: int, min_bursts: int = 10) -> np.ndarray:
    """Burst id int64 [N] of each frame: contiguous blocks of frames within each cell.

    ``cell`` [N] names each frame's cell (e.g. a (class, SNR) entry of a RadioML pickle); a
    cell's frames, in their order, are cut into ``max(ceil(n / burst_frames), min(n,
    min_bursts))`` blocks of near-equal length: blocks of at most ``burst_frames`` frames, and
    at least ``min_bursts`` blocks (one frame each in a smaller cell) so that a small cell can
    still give every split a block.
    """
    if burst_frames < 1:
        raise ConfigError(f"burst_frames must be 1 or more, got {burst_frames}")
    cell_ids = _first_seen_ids(np.asarray(cell).reshape(-1))
    if len(cell_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    size = np.bincount(cell_ids)
    blocks = np.maximum(-(-size // burst_frames), np.minimum(size, min_bursts))
    order = np.argsort(cell_ids, kind="stable")  # by cell, keeping the frames' order inside it
    rank = np.empty(len(cell_ids), dtype=np.int64)
    rank[order] = np.arange(len(cell_ids)) - np.repeat(np.cumsum(size) - size, size)
    offset = np.cumsum(blocks) - blocks
    return offset[cell_ids] + rank * blocks[cell_ids] // size[cell_ids]
