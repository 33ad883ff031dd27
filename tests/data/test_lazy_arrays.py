"""Memory-mapped npz members and .npy folders: the in-memory loader's frames, read per sample."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgekd.data.dataset import ArrayDataset, load_npz
from edgekd.data.lazy_arrays import ArrayFileDataset, CompressedArrayError, locate_frames
from edgekd.errors import InputFileError


def _data(n: int = 40, dtype=np.float32) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(
        x=rng.standard_normal((n, 2, 24)).astype(dtype),
        y=np.arange(n) % 4,
        class_names=["a", "b", "c", "d"],
        snr=np.arange(n) % 3,
        split=(np.arange(n) // 4) % 3,
    )


def test_npz_member_is_memory_mapped_and_equals_load_npz(tmp_path):
    path = tmp_path / "d.npz"
    _data().save_npz(path)
    memory = load_npz(path)
    lazy = ArrayFileDataset(path)
    assert lazy.input_shape == (2, 24) and lazy.class_names == memory.class_names
    assert isinstance(lazy._frames(), np.memmap)
    for name in ("y", "snr", "split"):
        np.testing.assert_array_equal(getattr(lazy, name), getattr(memory, name))
    np.testing.assert_array_equal(lazy.to_array_dataset().x, memory.x)
    x, y = lazy[-3]
    np.testing.assert_array_equal(x.numpy(), memory.x[-3])
    assert y == memory.y[-3] and x.numpy().flags.writeable
    assert len(pickle.dumps(lazy)) < 10_000  # labels only: the map is reopened
    assert locate_frames(path).shape == (40, 2, 24)


def test_folder_of_npy_files_and_small_dtypes(tmp_path):
    data = _data(dtype=np.float16)
    for key in ("x", "y", "split"):
        np.save(
            tmp_path / f"{key}.npy",
            getattr(data, key).astype(np.float16) if key == "x" else getattr(data, key),
        )
    lazy = ArrayFileDataset(tmp_path)
    assert lazy.class_names == ["0", "1", "2", "3"] and lazy.snr is None
    np.testing.assert_array_equal(lazy[7][0].numpy(), data.x[7].astype(np.float16).astype(np.float32))


def test_compressed_truncated_and_non_finite_files_are_named(tmp_path):
    data = _data()
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, x=data.x, y=data.y)
    with pytest.raises(CompressedArrayError, match=r"c\.npz: array 'x' is compressed"):
        ArrayFileDataset(compressed)
    whole = tmp_path / "w.npz"
    np.savez(whole, x=data.x, y=data.y)
    cut = tmp_path / "cut.npz"
    raw = whole.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match=r"cut\.npz"):
        ArrayFileDataset(cut)
    x = data.x.copy()
    x[9, 1, 3] = np.inf
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=data.y)
    lazy = ArrayFileDataset(bad)  # opening reads labels only
    lazy[8]
    with pytest.raises(
        InputFileError, match=r"bad\.npz: x holds NaN or infinite values \(first at frame 9\)"
    ):
        lazy[9]
    np.savez(tmp_path / "labels.npz", x=data.x, y=np.full(40, 7), class_names=np.array(["a", "b"]))
    with pytest.raises(InputFileError, match="label 7 but there are 2 class names"):
        ArrayFileDataset(tmp_path / "labels.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([None] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(InputFileError, match="objects"):
        ArrayFileDataset(tmp_path / "objects.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"lacks x\.npy"):
        ArrayFileDataset(tmp_path / "empty")
