"""Which frames calibrate INT8 post-training quantization, chosen reproducibly.

A calibration recipe (YAML, see ``calibration/README.md``) names the source split, the
sample count, the selection rule and a seed. The chosen indices are hashed so a manifest
can prove which frames set the quantization ranges.

Selection rules:

- ``random``: a uniform draw without replacement from the split.
- ``stratified_class`` / ``stratified_snr``: round-robin over the strata (classes or SNR
  labels) in a seeded order, a seeded random frame from each, so stratum counts differ by
  at most one unless a stratum runs out. Stratifying by SNR matters for radio data: a purely
  random draw can under-represent the high-SNR frames whose large peaks set the ranges.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgekd.config import from_dict, load_yaml, to_dict
from edgekd.data.dataset import SPLITS
from edgekd.data.splits import rank_within_strata
from edgekd.data.validate import check_finite
from edgekd.errors import ConfigError, InputFileError, ShapeError
from edgekd.registry import suggestion

SELECTIONS = ("random", "stratified_class", "stratified_snr")


@dataclasses.dataclass
class CalibrationRecipe:
    """How to pick calibration frames.

    ``source_split`` defaults to train. Calibrating on ``test`` leaks the test frames into the
    quantized model (its ranges are fit to them), so the accuracy reported on test is then
    optimistic; use train or val.
    """

    name: str = "default"
    source_split: Literal["train", "val", "test"] = "train"
    num_samples: int = 256
    selection: Literal["random", "stratified_class", "stratified_snr"] = "stratified_snr"
    seed: int = 0

    def validate(self) -> None:
        if not str(self.name).strip():
            raise ConfigError("calibration recipe name is empty", hint="give the recipe a name")
        if self.source_split not in SPLITS:
            raise ConfigError(
                f"unknown source_split {self.source_split!r}",
                hint=suggestion(str(self.source_split), list(SPLITS), "splits"),
            )
        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"unknown selection {self.selection!r}",
                hint=suggestion(str(self.selection), list(SELECTIONS), "selections"),
            )
        if self.num_samples <= 0:
            raise ConfigError(f"num_samples must be positive, got {self.num_samples}", hint="e.g. 256")
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")


def load_calibration_recipe(path: str | Path) -> CalibrationRecipe:
    """Read a calibration recipe YAML file; unknown keys and bad values raise ConfigError."""
    try:
        return from_dict(CalibrationRecipe, load_yaml(path))
    except ConfigError as exc:
        if str(path) in exc.message:
            raise
        raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None


def indices_sha256(indices: np.ndarray) -> str:
    """Hex sha256 of the indices as int64 little-endian bytes, in the given order."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


@dataclasses.dataclass
class CalibrationSelection:
    """The chosen frames: sorted int64 indices into the full dataset, and their hash.

    ``class_counts`` maps every class name -> frames chosen; ``snr_counts`` every SNR label of
    the source split (dB, as a string, for JSON) -> frames chosen, or None without SNR labels.
    ``note`` says when fewer frames than requested were available.
    """

    indices: np.ndarray
    sha256: str
    recipe: CalibrationRecipe
    available: int = 0
    class_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    snr_counts: dict[str, int] | None = None
    note: str | None = None

    def samples(self, dataset: Any) -> np.ndarray:
        """The calibration inputs as the network takes them, float32 [n, C, L] (or [n, 3, S, S]
        for raw image pixels, normalised), from the dataset they were selected in (an
        ArrayDataset or a map-style dataset: only the chosen frames are read).

        Frames holding NaN or Inf are refused: they would set the INT8 ranges to nonsense.
        """
        from edgekd.data.batches import network_arrays

        if len(self.indices) and int(self.indices.max()) >= len(dataset):
            raise ShapeError(
                f"calibration selection indexes frame {int(self.indices.max())} but "
                f"{dataset.source or 'the dataset'} has {len(dataset)} frames",
                hint="select again on this dataset; a selection is only valid for the dataset it came from",
            )
        frames = network_arrays(dataset, self.indices).x
        check_finite(
            frames, f"the calibration frames of {dataset.source or 'the dataset'}", rows=self.indices
        )
        return frames

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a manifest: recipe, count, sha256, per-class and per-SNR counts, note."""
        return {
            "recipe": to_dict(self.recipe),
            "count": len(self.indices),
            "available": self.available,
            "sha256": self.sha256,
            "per_class": dict(self.class_counts),
            "per_snr": None if self.snr_counts is None else dict(self.snr_counts),
            "note": self.note,
        }


@dataclasses.dataclass
class CalibrationFrames:
    """Calibration frames as the network takes them, float32 ``[n, ...]``, with the selection
    that chose them (indices, hash, counts) and the recipe's name or path as given."""

    frames: np.ndarray
    selection: CalibrationSelection
    name: str

    def to_dict(self) -> dict[str, Any]:
        return self.selection.to_dict()


def calibration_frames(dataset: Any, recipe: str | Path | CalibrationRecipe) -> CalibrationFrames:
    """The frames ``recipe`` chooses from ``dataset``: the one way every quantizer's caller (the
    pipeline, TensorRT INT8, deploy, QAT) turns a calibration recipe into frames.

    ``recipe``: a recipe name from ``calibration/`` or a YAML path (resolved by
    :func:`edgekd.resources.resolve`), or a :class:`CalibrationRecipe`. ``dataset``: an
    ArrayDataset or a map-style dataset; only the chosen frames are read.
    """
    if isinstance(recipe, CalibrationRecipe):
        name, loaded = recipe.name, recipe
    else:
        from edgekd import resources

        name, loaded = str(recipe), load_calibration_recipe(resources.resolve("calibration", recipe))
    selection = select_calibration(dataset, loaded)
    return CalibrationFrames(selection.samples(dataset), selection, name)


def select_calibration(dataset: Any, recipe: CalibrationRecipe) -> CalibrationSelection:
    """Pick calibration frames from ``recipe.source_split`` of ``dataset`` (deterministic by seed).

    ``dataset``: an ArrayDataset or a map-style dataset; only its labels, SNRs and splits are
    read (no frame).

    Returns indices into the full dataset, not into the split. Asking for more frames than
    the split holds takes all of them and says so in ``note``.
    """
    recipe.validate()
    if recipe.selection == "stratified_snr" and dataset.snr is None:
        raise ConfigError(
            f"calibration selection 'stratified_snr' needs SNR labels but {dataset.source or 'the dataset'} "
            "has none",
            hint="set selection: stratified_class or random in the calibration recipe",
        )
    pool = _split_pool(dataset, recipe.source_split)
    rng = np.random.default_rng(recipe.seed)
    count = min(recipe.num_samples, len(pool))
    if recipe.selection == "random":
        chosen = pool[rng.permutation(len(pool))[:count]]
    else:
        labels = dataset.y if recipe.selection == "stratified_class" else dataset.snr
        chosen = pool[_round_robin(np.asarray(labels)[pool], count, rng)]
    indices = np.sort(chosen).astype(np.int64)
    note = None
    if count < recipe.num_samples:
        note = (
            f"requested {recipe.num_samples} samples but the {recipe.source_split!r} split holds "
            f"{len(pool)}; all {len(pool)} are used"
        )
    return CalibrationSelection(
        indices=indices,
        sha256=indices_sha256(indices),
        recipe=recipe,
        available=len(pool),
        class_counts=_counts(dataset.y[indices], np.arange(dataset.num_classes), dataset.class_names),
        snr_counts=None if dataset.snr is None else _counts(dataset.snr[indices], dataset.snr[pool]),
        note=note,
    )


def _split_pool(dataset: Any, split: str) -> np.ndarray:
    """Indices (int64, ascending) of the frames in ``split``; an empty split is an error."""
    if dataset.split is None:
        raise InputFileError(
            f"{dataset.source or 'the dataset'} has no split labels, so its {split!r} split cannot be "
            "taken for calibration",
            hint="assign splits (edgekd.data.splits.assign_splits) and save them with the dataset",
        )
    pool = dataset.split_indices(split).astype(np.int64)
    if len(pool) == 0:
        others = [s for s in SPLITS if s != split and np.any(dataset.split == SPLITS.index(s))]
        raise ConfigError(
            f"the {split!r} split of {dataset.source or 'the dataset'} is empty; nothing to calibrate on",
            hint=f"set source_split to one of {', '.join(others)}" if others else "use a dataset with frames",
        )
    return pool


def _round_robin(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Positions into ``labels`` [P]: round r takes the r-th random frame of each stratum.

    Strata are visited in one seeded order every round, so only the last, partial round
    decides which strata get one extra frame, and that choice is random rather than
    favouring the lowest label.
    """
    rank, _ = rank_within_strata(labels, rng)
    _, stratum = np.unique(labels, return_inverse=True)
    stratum = stratum.reshape(-1)
    priority = rng.permutation(int(stratum.max()) + 1)
    return np.lexsort((priority[stratum], rank))[:count]


def _counts(values: np.ndarray, keys: np.ndarray, names: list[str] | None = None) -> dict[str, int]:
    """Label -> count for every label in ``keys`` (zeros included, ascending); class ids by name."""
    keys = np.unique(keys)
    tally = np.bincount(np.searchsorted(keys, values), minlength=len(keys))  # values ⊆ keys
    return {(names[int(k)] if names else str(int(k))): int(c) for k, c in zip(keys, tally, strict=True)}
