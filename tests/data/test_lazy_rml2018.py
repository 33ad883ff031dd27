"""RadioML 2018 read lazily: the in-memory loader's frames, batches read as a few slices."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgekd.data.lazy_rml2018 import RML2018Dataset
from edgekd.data.rml2018 import RML2018Selection, materialize_rml2018
from edgekd.data.samplers import chunk_batches
from edgekd.errors import InputFileError

h5py = pytest.importorskip("h5py", reason="h5py is not installed")


def write_rml(path, per_cell: int = 4, length: int = 32, snrs=(-10, 0, 10), chunks=None, sort=False):
    """The published layout: X [N, L, 2], one-hot Y [N, 24], Z [N, 1] (sorted like the real file
    with ``sort``, else shuffled)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(24), len(snrs) * per_cell)
    z = np.tile(np.repeat(snrs, per_cell), 24)
    if not sort:
        order = rng.permutation(len(y))
        y, z = y[order], z[order]
    x = rng.standard_normal((len(y), length, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=x, chunks=chunks)
        f.create_dataset("Y", data=np.eye(24, dtype=np.int64)[y])
        f.create_dataset("Z", data=z.reshape(-1, 1))
    return x, y, z


@pytest.mark.parametrize(
    "options", [{}, {"classes": ["FM", "OOK"], "snrs": [0, 10]}, {"max_frames_per_cell": 2}]
)
def test_same_frames_labels_and_splits_as_the_in_memory_loader(tmp_path, options):
    path = tmp_path / "r.hdf5"
    write_rml(path)
    selection = RML2018Selection(seed=3, **options)
    memory = materialize_rml2018(path, selection)
    lazy = RML2018Dataset(path, selection)
    assert len(lazy) == len(memory) and lazy.input_shape == (2, 32) and lazy.class_names == memory.class_names
    for name in ("y", "snr", "split"):
        np.testing.assert_array_equal(getattr(lazy, name), getattr(memory, name))
    np.testing.assert_array_equal(lazy.to_array_dataset().x, memory.x)
    i = len(lazy) // 2
    x, y = lazy[i]
    assert x.shape == (2, 32) and y == memory.y[i]
    np.testing.assert_array_equal(x.numpy(), memory.x[i])


def test_chunk_batches_are_read_as_few_slices(tmp_path, monkeypatch):
    path = tmp_path / "r.hdf5"
    x, *_ = write_rml(path, per_cell=8, chunks=(4, 32, 2), sort=True)  # 576 frames, class-sorted
    lazy = RML2018Dataset(path)
    assert lazy.chunk_rows == 4
    reads: list[object] = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/X":
            reads.append(key)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    for data, most_blocks in ((lazy, 32 // 8 + 1), (lazy.subset("train"), 32 // 4)):
        sampler = chunk_batches(data, 32, seed=1, blocks_per_batch=4)  # blocks of 8 rows = 2 chunks
        assert sampler.block_rows == 8
        seen, classes = [], []
        for batch in sampler:
            reads.clear()
            pairs = data.__getitems__(batch)
            for (frame, _), i in zip(pairs, batch, strict=True):
                np.testing.assert_array_equal(frame.numpy(), x[data.rows[i]].T)
            assert all(isinstance(key, slice) for key in reads) and len(reads) <= most_blocks
            seen.extend(batch)
            classes.append(len({label for _, label in pairs}))
        assert sorted(seen) == list(range(len(data)))
        assert np.median(classes) >= 2  # a class-sorted file still gives mixed batches


def test_pickles_without_the_handle_and_reports_bad_frames(tmp_path):
    path = tmp_path / "r.hdf5"
    x, *_ = write_rml(path)
    lazy = RML2018Dataset(path)
    lazy[0]
    clone = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(clone[5][0].numpy(), x[lazy.rows[5]].T)
    lazy.close()
    clone.close()
    with h5py.File(path, "r+") as f:
        f["X"][7, 3, 0] = np.nan
    with pytest.raises(InputFileError, match=r"r\.hdf5: X holds NaN .* frame 7"):
        RML2018Dataset(path).__getitems__(list(range(10)))
