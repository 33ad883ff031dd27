"""Calibration-sample selection: strata counts, determinism, hashing, recipe errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.data.calibration import CalibrationRecipe, load_calibration_recipe, select_calibration
from edgekd.data.dataset import ArrayDataset
from edgekd.data.splits import assign_splits
from edgekd.errors import ConfigError, InputFileError, ShapeError

RECIPES = Path(__file__).resolve().parents[2] / "calibration"


def _dataset(classes: int = 4, snrs: int = 5, per_cell: int = 30, with_snr: bool = True) -> ArrayDataset:
    y = np.repeat(np.arange(classes), snrs * per_cell)
    snr = np.tile(np.repeat(np.arange(snrs) * 4 - 8, per_cell), classes)
    x = np.random.default_rng(0).standard_normal((len(y), 2, 16)).astype(np.float32)
    return ArrayDataset(
        x=x,
        y=y,
        class_names=[f"c{i}" for i in range(classes)],
        snr=snr if with_snr else None,
        split=assign_splits(y, snr, 0.1, 0.2, seed=0),
    )


def _hash(indices: np.ndarray) -> str:
    return hashlib.sha256(b"".join(int(i).to_bytes(8, "little", signed=True) for i in indices)).hexdigest()


@pytest.mark.parametrize(
    ("selection", "key", "strata"), [("stratified_snr", "snr", 5), ("stratified_class", "y", 4)]
)
@pytest.mark.parametrize("count", [23, 40, 57])
def test_stratified_counts_differ_by_at_most_one(selection, key, strata, count):
    ds = _dataset()
    sel = select_calibration(ds, CalibrationRecipe(num_samples=count, selection=selection, seed=2))
    assert sel.indices.dtype == np.int64 and len(sel.indices) == count
    assert np.array_equal(sel.indices, np.unique(sel.indices))  # sorted, no repeats
    assert np.all(ds.split[sel.indices] == 0)  # train only
    per_stratum = np.unique(getattr(ds, key)[sel.indices], return_counts=True)[1]
    assert len(per_stratum) == strata and per_stratum.max() - per_stratum.min() <= 1


def test_the_extra_frames_of_a_partial_round_go_to_different_strata_by_seed():
    ds = _dataset()
    lucky = set()
    for seed in range(10):
        sel = select_calibration(ds, CalibrationRecipe(num_samples=6, selection="stratified_snr", seed=seed))
        values, counts = np.unique(ds.snr[sel.indices], return_counts=True)
        lucky.add(int(values[counts == 2][0]))
    assert len(lucky) >= 3  # not always the lowest SNR


def test_an_exhausted_stratum_gives_what_it_has_and_the_rest_stay_balanced():
    ds = _dataset()
    ds.split[(ds.snr == 0) & (ds.split == 0)] = 1  # leave SNR 0 dB one training frame
    ds.split[np.flatnonzero(ds.snr == 0)[0]] = 0
    sel = select_calibration(ds, CalibrationRecipe(num_samples=41, selection="stratified_snr"))
    counts = sel.to_dict()["per_snr"]
    assert counts["0"] == 1 and sorted(v for k, v in counts.items() if k != "0") == [10, 10, 10, 10]


def test_random_selection_comes_from_the_split_and_is_sorted():
    ds = _dataset()
    sel = select_calibration(ds, CalibrationRecipe(num_samples=50, selection="random", source_split="val"))
    assert len(sel.indices) == 50 and np.all(ds.split[sel.indices] == 1)
    assert np.all(np.diff(sel.indices) > 0)


@pytest.mark.parametrize("selection", ["random", "stratified_class", "stratified_snr"])
def test_deterministic_by_seed_and_hash_is_reproducible(selection):
    ds = _dataset()
    a = select_calibration(ds, CalibrationRecipe(num_samples=30, selection=selection, seed=1))
    b = select_calibration(ds, CalibrationRecipe(num_samples=30, selection=selection, seed=1))
    c = select_calibration(ds, CalibrationRecipe(num_samples=30, selection=selection, seed=2))
    assert np.array_equal(a.indices, b.indices) and a.sha256 == b.sha256
    assert not np.array_equal(a.indices, c.indices) and a.sha256 != c.sha256
    assert a.sha256 == _hash(a.indices)


def test_samples_and_manifest_dict():
    ds = _dataset()
    sel = select_calibration(ds, CalibrationRecipe(num_samples=20))
    samples = sel.samples(ds)
    assert samples.dtype == np.float32 and samples.shape == (20, 2, 16)
    assert np.array_equal(samples, ds.x[sel.indices])
    record = json.loads(json.dumps(sel.to_dict()))
    assert record["count"] == 20 and record["sha256"] == sel.sha256 and record["note"] is None
    assert record["recipe"]["selection"] == "stratified_snr"
    assert sum(record["per_class"].values()) == 20 and list(record["per_class"]) == ["c0", "c1", "c2", "c3"]
    assert record["per_snr"] == {"-8": 4, "-4": 4, "0": 4, "4": 4, "8": 4}
    with pytest.raises(ShapeError):
        sel.samples(ds.take(np.arange(10)))


def test_asking_for_more_than_the_split_holds_takes_all_and_says_so():
    ds = _dataset()
    available = int(np.sum(ds.split == 2))
    sel = select_calibration(ds, CalibrationRecipe(num_samples=10_000, source_split="test"))
    assert np.array_equal(sel.indices, np.flatnonzero(ds.split == 2))
    record = sel.to_dict()
    assert record["count"] == available and record["available"] == available
    assert "10000" in record["note"] and str(available) in record["note"]


def test_stratified_snr_without_snr_labels_names_the_fix():
    ds = _dataset(with_snr=False)
    with pytest.raises(ConfigError) as info:
        select_calibration(ds, CalibrationRecipe(selection="stratified_snr"))
    assert "stratified_class" in info.value.one_line()
    sel = select_calibration(ds, CalibrationRecipe(num_samples=8, selection="stratified_class"))
    assert sel.to_dict()["per_snr"] is None


def test_missing_or_empty_split_is_an_error():
    ds = _dataset()
    no_split = ArrayDataset(x=ds.x, y=ds.y, class_names=ds.class_names, snr=ds.snr)
    with pytest.raises(InputFileError, match="no split labels"):
        select_calibration(no_split, CalibrationRecipe())
    ds.split[ds.split == 1] = 0
    with pytest.raises(ConfigError, match="'val' split of the dataset is empty"):
        select_calibration(ds, CalibrationRecipe(source_split="val"))


def test_shipped_recipes_load():
    snr = load_calibration_recipe(RECIPES / "modrec-stratified-snr.yaml")
    assert snr == CalibrationRecipe(
        name="modrec-stratified-snr",
        source_split="train",
        num_samples=256,
        selection="stratified_snr",
        seed=0,
    )
    rnd = load_calibration_recipe(RECIPES / "random-256.yaml")
    assert (rnd.selection, rnd.num_samples, rnd.source_split) == ("random", 256, "train")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("num_sample: 10\n", "did you mean 'num_samples'"),
        ("selection: stratified_snrr\n", "did you mean 'stratified_snr'"),
        ("source_split: training\n", "source_split must be one of"),
        ("num_samples: 0\n", "num_samples must be positive"),
        ("num_samples: many\n", "must be an integer"),
        ("- a list\n", "must hold a YAML mapping"),
    ],
)
def test_bad_recipe_is_a_config_error_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_calibration_recipe(path)
    assert fragment in info.value.one_line() and "recipe.yaml" in info.value.one_line()


def test_recipe_built_in_code_is_validated_too():
    with pytest.raises(ConfigError) as info:
        select_calibration(_dataset(), CalibrationRecipe(selection="randm"))  # type: ignore[arg-type]
    assert "did you mean 'random'" in info.value.one_line()
