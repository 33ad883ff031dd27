"""Data validation at the door: one checker for every loader, one line naming the file and array."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edgekd.data import validate
from edgekd.data.dataset import ArrayDataset, load_npz
from edgekd.data.validate import check_splits, first_non_finite, validate_arrays
from edgekd.errors import InputFileError

N = 24
RNG = np.random.default_rng(0)
X = RNG.standard_normal((N, 2, 16)).astype(np.float32)
VALID = {
    "x": X,
    "y": np.arange(N) % 3,
    "class_names": np.array(["BPSK", "QPSK", "FM"]),
    "snr": np.tile([0, 10], N // 2),
    "split": np.repeat([0, 0, 1, 2], N // 4),
}


def _with(**changes) -> dict[str, np.ndarray]:
    arrays = dict(VALID)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


def _nan_at(frame: int) -> np.ndarray:
    x = X.copy()
    x[frame, 1, 3] = np.nan
    return x


def _refused(path, fragment: str) -> str:
    with pytest.raises(InputFileError) as info:
        load_npz(path)
    line = info.value.one_line()
    assert str(path) in line and fragment in line, line
    assert "\n" not in line
    return line


def test_valid_arrays_load_with_labels_snr_split_and_source(tmp_path):
    np.savez(tmp_path / "d.npz", **VALID)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.x.dtype == np.float32 and ds.x.shape == (N, 2, 16) and ds.class_names == ["BPSK", "QPSK", "FM"]
    assert ds.snr.dtype == np.int16 and ds.split.dtype == np.int8
    assert ds.source == f"dataset {tmp_path / 'd.npz'}"


@pytest.mark.parametrize(
    "y",
    [
        np.eye(3)[np.arange(N) % 3],
        (np.arange(N) % 3).astype(np.float64),
        (np.arange(N) % 3).astype(np.uint8),
        (np.arange(N) % 3).reshape(N, 1),
    ],
    ids=["one-hot", "whole floats", "uint8", "column"],
)
def test_other_label_encodings_of_the_same_classes_are_accepted(tmp_path, y):
    np.savez(tmp_path / "d.npz", **_with(y=y))
    assert load_npz(tmp_path / "d.npz").y.tolist() == (np.arange(N) % 3).tolist()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"x": _nan_at(7)}, "x holds NaN or infinite values (first at frame 7)"),
        ({"x": np.full_like(X, -np.inf)}, "NaN or infinite"),
        ({"x": X.astype(np.float64) * 1e300}, "NaN or infinite"),  # finite float64, inf as float32
        (
            {"x": np.zeros((0, 2, 16), np.float32), "y": np.zeros(0, int), "snr": None, "split": None},
            "no frames",
        ),
        ({"x": np.zeros((N, 2, 0), np.float32)}, "zero-size frames"),
        ({"x": X.reshape(N, -1)}, "expected [N, C, L]"),
        ({"x": X.reshape(N, 2, 4, 2, 2)}, "expected [N, C, L]"),
        ({"x": np.float32(1.0)}, "x has shape []"),
        ({"x": X.astype(np.complex64)}, "x holds complex numbers"),
        ({"x": np.full(X.shape, "a")}, "x holds strings"),
        ({"x": X > 0}, "x holds booleans"),
        ({"x": None}, "lacks array(s) x"),
        ({"y": None}, "lacks array(s) y"),
        ({"y": np.arange(N - 1) % 3}, "y has shape [23]; expected [24]"),
        ({"y": np.arange(N) % 3 + 0.5}, "expected whole numbers"),
        ({"y": np.where(np.arange(N) == 3, np.nan, 0.0)}, "y holds nan at index 3"),
        ({"y": np.array(["a"] * N)}, "y holds strings"),
        ({"y": np.arange(N) % 3 - 1}, "negative label -1"),
        ({"y": np.arange(N) % 5}, "label 4 but there are 3 class names"),
        (
            {"y": np.r_[np.arange(N - 1) % 3, 10**12], "class_names": None},
            "label 1000000000000 and no class_names",
        ),
        ({"y": np.eye(3)[np.arange(N) % 3] * 0.5}, "y row 0 is not one-hot"),
        ({"y": np.eye(4)[np.arange(N) % 4]}, "one-hot over 4 classes but class_names has 3"),
        ({"class_names": np.array(["a", "b"])}, "label 2 but there are 2 class names"),
        ({"class_names": np.array(["a", "b", "a"])}, "lists 'a' twice"),
        ({"class_names": np.array(["a", "", "c"])}, "class name '' is empty"),
        ({"class_names": np.array(["a", "b\nc", "d"])}, "not printable"),
        ({"class_names": np.array([1, 2, 3])}, "class_names is int64"),
        ({"y": np.zeros(N, int), "class_names": None}, "holds 1 class; a classifier needs at least 2"),
        ({"y": np.zeros(N, int), "class_names": np.array(["a"])}, "holds 1 class"),
        ({"snr": np.zeros(3)}, "snr has shape [3]; expected [24]"),
        ({"snr": np.full(N, np.nan)}, "snr holds nan"),
        ({"snr": np.full(N, 0.5)}, "snr holds 0.5"),
        ({"snr": np.full(N, 10**9)}, "out of range"),
        ({"split": np.full(N, 3)}, "split holds the code 3"),
        ({"split": np.zeros(2)}, "split has shape [2]"),
    ],
)
def test_bad_arrays_are_refused_in_one_line_naming_file_and_array(tmp_path, changes, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **_with(**changes))
    _refused(path, fragment)


def _npy(header_shape, data: np.ndarray) -> bytes:
    out = io.BytesIO()
    header = {"descr": data.dtype.str, "fortran_order": False, "shape": header_shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data.tobytes()


def test_headers_are_checked_before_any_data_is_read(tmp_path):
    forged = tmp_path / "forged.npz"  # declares 10^12 frames, holds 4: never allocated
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("x.npy", _npy((10**12, 2, 16), np.zeros((4, 2, 16), np.float32)))
        archive.writestr("y.npy", _npy((4,), np.arange(4)))
    _refused(forged, "declares shape [1000000000000, 2, 16]")
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.zeros(4))
    _refused(tmp_path / "obj.npz", "array 'x' holds Python objects")
    np.savez(tmp_path / "rec.npz", x=np.zeros(4, dtype=[("a", "f4")]), y=np.zeros(4))
    _refused(tmp_path / "rec.npz", "array 'x' holds records")


def test_damaged_files_are_refused(tmp_path):
    np.savez(tmp_path / "ok.npz", **VALID)
    blob = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    _refused(tmp_path / "cut.npz", "is not an npz file")
    flipped = bytearray(blob)
    flipped[200] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    _refused(tmp_path / "flip.npz", "not a readable npz file")
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    _refused(tmp_path / "text.npz", "is not an npz file")
    np.save(tmp_path / "plain.npy", X)
    _refused(tmp_path / "plain.npy", "is not an npz file")


def test_an_array_bigger_than_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "d.npz", **VALID)
    monkeypatch.setattr(validate, "physical_memory", lambda: 2 * X.nbytes - 1)
    _refused(tmp_path / "d.npz", "array 'x' would take")


def test_the_finite_check_streams_blocks_and_names_the_first_bad_frame(monkeypatch):
    sliced: list[int] = []

    class Recorder:
        dtype, shape = X.dtype, X.shape

        def __getitem__(self, key):
            sliced.append(key.stop - key.start)
            return _nan_at(19)[key]

    monkeypatch.setattr(validate, "FINITE_BLOCK", 64)  # two frames of 2 x 16 per block
    assert first_non_finite(Recorder()) == 19
    assert max(sliced) == 2 and len(sliced) == 10  # stopped at the block holding frame 19
    assert first_non_finite(X) is None and first_non_finite(np.arange(5)) is None


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    bad = ArrayDataset(x=_nan_at(0), y=VALID["y"], class_names=["a", "b", "c"])
    with pytest.raises(InputFileError, match="NaN"):
        bad.save_npz(tmp_path / "d.npz")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_split_taken_is_an_error_naming_the_file(tmp_path):
    np.savez(tmp_path / "d.npz", **_with(split=np.zeros(N, int)))
    ds = load_npz(tmp_path / "d.npz")
    assert len(ds.subset("train")) == N
    with pytest.raises(InputFileError) as info:
        ds.subset("test")
    assert f"{tmp_path / 'd.npz'}: the 'test' split is empty" in info.value.one_line()


@pytest.mark.parametrize(
    ("split", "y", "fragment"),
    [
        (np.repeat([0, 0, 1, 1], N // 4), np.arange(N) % 3, "the 'test' split is empty"),
        (np.repeat([0, 2, 2, 2], N // 4), np.arange(N) % 3, "the 'val' split is empty"),
        (
            np.r_[0, np.ones(N // 2 - 1, int), np.full(N // 2, 2)],
            np.arange(N) % 3,
            "'train' split holds 1 frame",
        ),
        (
            np.repeat([0, 0, 1, 2], N // 4),
            np.r_[np.zeros(N // 2, int), np.arange(N // 2) % 3],
            "class 'QPSK', 'FM'",
        ),
        (None, np.arange(N) % 3, "has no split labels"),
    ],
)
def test_check_splits_requires_what_training_needs(split, y, fragment):
    ds = validate_arrays(X, y, where="dataset d.npz", class_names=["BPSK", "QPSK", "FM"], split=split)
    with pytest.raises(InputFileError) as info:
        check_splits(ds, "dataset d.npz", "fix it")
    assert fragment in info.value.one_line() and "d.npz" in info.value.one_line()
