"""npz input a new user trips on (issue #20, part 4): arrays under near-miss names, a file
without split labels, a file without class names. Each refusal or warning is one line that
names the file and the fix."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgekd.data import validate
from edgekd.data.artifact import open_data
from edgekd.data.dataset import NPZ_HINT, load_npz
from edgekd.data.lazy_arrays import ArrayFileDataset
from edgekd.data.splits import assign_splits
from edgekd.data.validate import check_splits
from edgekd.errors import InputFileError

N, K = 30, 3
X = np.random.default_rng(0).standard_normal((N, 2, 16)).astype(np.float32)
Y = np.arange(N) % K
NAMES = np.array(["BPSK", "QPSK", "FM"])
SPLIT = (np.arange(N) // K) % 3


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    # The warning is said once per file and process: each test starts with none said.
    monkeypatch.setattr(validate, "_unnamed_told", set(), raising=False)


def _refusal(path, lazy: bool) -> str:
    with pytest.raises(InputFileError) as info:
        ArrayFileDataset(path) if lazy else load_npz(path)
    return info.value.one_line()


# --- 1. near-miss names: the refusal names what the file holds and what to rename --------------


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "memory-mapped"])
def test_radioml_style_names_point_to_the_rename(tmp_path, lazy):
    path = tmp_path / "rml.npz"
    np.savez(path, X=X, Y=Y, classes=NAMES)
    line = _refusal(path, lazy)
    assert line.startswith(f"dataset {path} lacks array(s) x, y; it holds 'X', 'Y', 'classes'")
    assert "rename 'X' to 'x', 'Y' to 'y'" in line and "\n" not in line


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"data": X, "labels": Y}, "rename 'data' to 'x', 'labels' to 'y'"),
        ({"x": X, "y_train": Y}, "rename 'y_train' to 'y'"),
        ({"x": X, "classes": Y}, "rename 'classes' to 'y'"),  # integer labels under "classes"
        ({"frames": X, "target": Y}, "rename 'frames' to 'x', 'target' to 'y'"),
    ],
)
def test_other_tools_names_are_recognised(tmp_path, arrays, expected):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    assert expected in _refusal(path, lazy=False)


def test_strings_are_never_proposed_as_labels_and_unrelated_names_are_only_listed(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=X, classes=NAMES, weights=np.ones(N))  # "classes" here are class names
    line = _refusal(path, lazy=False)
    assert "lacks array(s) y; it holds 'classes', 'weights', 'x'" in line and "rename" not in line
    from edgekd.data.dataset import near_miss

    assert near_miss("class_names", {"classes": ((3,), NAMES.dtype)}) == "classes"


def test_a_folder_of_npy_files_names_its_near_miss(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", Y)
    line = _refusal(folder, lazy=True)
    assert "lacks x.npy; it holds 'X', 'y': rename 'X' to 'x'" in line


# --- 2. split: the hint and the refusal agree, and the refusal says how to add one -------------


def test_hint_says_training_needs_split():
    assert "split [N] (0 train, 1 val, 2 test) too for distill and run" in NPZ_HINT
    assert "optionally split" not in NPZ_HINT


def test_file_without_split_is_refused_for_training_with_the_way_to_add_one(tmp_path):
    path = tmp_path / "nosplit.npz"
    np.savez(path, x=X, y=Y, class_names=NAMES)
    dataset = open_data(path)  # bench, quantize, export: scored whole, no refusal
    assert dataset.split is None and len(dataset) == N
    with pytest.raises(InputFileError) as info:
        check_splits(dataset, f"dataset {path}", "fix it")
    line = info.value.one_line()
    assert "has no split labels; training needs them" in line
    assert "edgekd.data.splits.assign_splits(y, snr)" in line
    # The fix the line names works: the file with that split passes.
    np.savez(path, x=X, y=Y, class_names=NAMES, split=assign_splits(Y, seed=0))
    check_splits(open_data(path), f"dataset {path}", "fix it")


# --- 3. no class_names: still read, named '0'..'K-1', and one warning line says so -------------


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "memory-mapped"])
def test_missing_class_names_is_said_once(tmp_path, caplog, lazy):
    path = tmp_path / "unnamed.npz"
    np.savez(path, x=X, y=Y, split=SPLIT)
    caplog.set_level(logging.WARNING, logger="edgekd.data")
    for _ in range(2):  # a run opens its data in several stages: one line
        dataset = ArrayFileDataset(path) if lazy else load_npz(path)
    assert dataset.class_names == ["0", "1", "2"]
    lines = [r.getMessage() for r in caplog.records if r.name == "edgekd.data"]
    assert lines == [
        f"dataset {path} has no class_names: its classes are named '0'..'2' "
        "(fix: add a class_names array of 3 strings, in label order)"
    ]


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "memory-mapped"])
def test_missing_class_names_points_to_a_near_miss(tmp_path, caplog, lazy):
    path = tmp_path / "mods.npz"
    np.savez(path, x=X, y=Y, split=SPLIT, mods=NAMES)
    caplog.set_level(logging.WARNING, logger="edgekd.data")
    ArrayFileDataset(path) if lazy else load_npz(path)
    assert "(fix: rename its array 'mods' to 'class_names')" in caplog.text


def test_named_classes_warn_nothing(tmp_path, caplog):
    path = tmp_path / "named.npz"
    np.savez(path, x=X, y=Y, split=SPLIT, class_names=NAMES)
    caplog.set_level(logging.WARNING, logger="edgekd.data")
    assert load_npz(path).class_names == list(NAMES)
    assert ArrayFileDataset(path).class_names == list(NAMES)
    assert not [r for r in caplog.records if r.name == "edgekd.data"]


def test_the_npz_rules_are_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text(encoding="utf-8")
    assert "**Your own arrays (npz).**" in text
    for fragment in ("rename 'X' to 'x'", "assign_splits(y, snr, seed=0)", "has no class_names"):
        assert fragment in " ".join(text.split()), fragment
