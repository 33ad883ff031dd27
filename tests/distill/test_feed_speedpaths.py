"""The fast paths of the training feed (issue #20, part 3): each gives what the slow path gave.

* ``MapDataset.read_batch``: a batch read whole (one ``_read``, one tensor) equals the
  per-sample ``__getitems__`` collated, for every kind of key and source; training views and
  datasets that read in their own way still go sample by sample;
* index checks are one vectorised check per batch (``IndexedDataset`` no longer calls
  ``_index`` twice per key);
* "auto" workers read a memory map that fits the page cache in the training process;
* ``LoaderFeed`` with 0 workers reads in this process without a DataLoader: the same
  batches, the same resume point, the same one-line errors; with workers it hands whole
  batches over (checked in a fresh interpreter, as tests/data/test_workers.py explains).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.data import batches
from edgekd.data.batches import _collate, keyed_loader, resolve_workers
from edgekd.data.dataset import ArrayDataset
from edgekd.data.lazy_arrays import ArrayFileDataset
from edgekd.data.mapstyle import IndexedDataset, MapDataset, MemoryDataset, sample_seed
from edgekd.distill.distributed import DistContext
from edgekd.distill.feed import LoaderFeed
from edgekd.distill.run_state import ShuffledBatches
from edgekd.errors import InputFileError

ROOT = Path(__file__).resolve().parents[2]


def _arrays(n: int = 40, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(
        x=rng.standard_normal((n, 2, 16)).astype(np.float32), y=np.arange(n) % 3, class_names=["a", "b", "c"]
    )


def _noise(x: np.ndarray, seed: int) -> np.ndarray:
    return x + np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)


class _Pixels(MapDataset):
    """uint8 samples that ``_read`` returns as a list (as the image datasets do)."""

    sample_dtype = np.uint8

    def __init__(self, n: int = 12) -> None:
        super().__init__(
            rows=np.arange(n)[::-1].copy(), y=np.arange(n) % 2, class_names=["a", "b"], input_shape=(1, 3, 3)
        )

    def _read(self, rows: np.ndarray) -> list[np.ndarray]:
        return [np.full((1, 3, 3), r, dtype=np.uint8) for r in rows.tolist()]


def _slow(dataset: MapDataset, keys) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-sample path: ``__getitems__`` with each sample's index, collated as before."""
    return _collate(IndexedDataset(dataset).__getitems__(list(keys)))


def _assert_batches_equal(got, expected) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.fixture()
def npz(tmp_path) -> Path:
    path = tmp_path / "frames.npz"
    _arrays(40, seed=1).save_npz(path)  # np.savez: x stored, memory-mapped when read
    return path


def _datasets(npz: Path) -> dict[str, MapDataset]:
    return {
        "memory": MemoryDataset(_arrays()),
        "memory, narrowed": MemoryDataset(_arrays()).take([7, 3, 3, 39, 0]),
        "memory map": ArrayFileDataset(npz),
        "memory map, narrowed": ArrayFileDataset(npz).take(np.arange(40)[::-3]),
        "uint8 samples listed": _Pixels(),
    }


@pytest.mark.parametrize(
    "keys",
    [[4, 1, 1, 0], np.array([3, 0, 2]), torch.tensor([2, 4]), [-1, 0, -3], [np.int64(2), 1]],
    ids=["ints", "array", "tensor", "negative", "numpy ints"],
)
def test_a_batch_read_whole_equals_its_samples_collated(npz, keys):
    for name, dataset in _datasets(npz).items():
        got = dataset.read_batch(keys)
        _assert_batches_equal(got, _slow(dataset, keys.tolist() if hasattr(keys, "tolist") else keys))
        assert got[0].is_contiguous(), name


def test_an_empty_batch_has_the_sample_shape_and_dtype(npz):
    x, y, idx = _Pixels().read_batch([])
    assert x.shape == (0, 1, 3, 3) and x.dtype == torch.uint8 and len(y) == len(idx) == 0
    assert ArrayFileDataset(npz).read_batch(np.array([], np.int64))[0].shape == (0, 2, 16)


def test_training_views_read_whole_are_each_samples_own_view():
    data = _arrays()
    views = MemoryDataset(data, augment=_noise, augment_seed=7)
    keys = [(3, 2), (5, 2), (3, 1)]
    x, y, idx = views.read_batch(keys)
    _assert_batches_equal((x, y, idx), _slow(views, keys))
    np.testing.assert_array_equal(x[0].numpy(), _noise(data.x[3], sample_seed(7, 2, 3)))
    assert not torch.equal(x[0], x[2])  # view 2 and view 1 of sample 3
    plain = MemoryDataset(data)  # no augmentation: a training key gives the evaluation view
    assert torch.equal(plain.read_batch(keys)[0], torch.from_numpy(data.x[[3, 5, 3]]))


def test_a_dataset_that_reads_its_own_way_is_read_through_getitems():
    seen = []

    class Recording(MemoryDataset):
        def __getitems__(self, keys):
            seen.append(list(keys))
            return super().__getitems__(keys)

    recording = Recording(_arrays())
    recording.read_batch([2, 0])
    patched = MemoryDataset(_arrays())
    read = patched.__getitems__
    patched.__getitems__ = lambda keys: seen.append(["patched", *keys]) or read(keys)
    x = patched.read_batch([1])[0]
    assert seen == [[2, 0], ["patched", 1]] and torch.equal(x[0], read([1])[0][0])


def test_keys_are_checked_once_per_batch_not_once_per_key(monkeypatch):
    dataset = MemoryDataset(_arrays())
    calls = []
    original = MapDataset._index
    monkeypatch.setattr(MapDataset, "_index", lambda self, i: calls.append(i) or original(self, i))
    rows = IndexedDataset(dataset).__getitems__([(-1, 0), 5, (2, 1)])
    assert [i for _, _, i in rows] == [39, 5, 2]
    dataset.read_batch(list(range(40)))
    assert calls == []  # neither IndexedDataset nor read_batch checks key by key
    for bad, named in (([3, 40], "40"), ([-41], "-41"), ([(40, 0)], "40")):
        for read in (IndexedDataset(dataset).__getitems__, dataset.read_batch):
            with pytest.raises(IndexError, match=f"sample index {named} out of range for 40 samples"):
                read(bad)


# --- how many workers "auto" gives a memory map ---


class _LazyRows(MapDataset):
    """A lazy dataset that is not a memory map (decoding, HDF5...)."""

    def __init__(self) -> None:
        super().__init__(rows=np.arange(4), y=np.arange(4) % 2, class_names=["a", "b"], input_shape=(2, 8))

    def _read(self, rows):
        return np.zeros((len(rows), 2, 8), np.float32)


def test_auto_workers_read_a_memory_map_in_the_page_cache_in_this_process(monkeypatch, npz):
    monkeypatch.delenv(batches.WORKERS_ENV, raising=False)
    monkeypatch.setattr(batches, "available_cores", lambda: 4)
    mapped = ArrayFileDataset(npz)
    assert resolve_workers("auto", mapped) == 0 and resolve_workers(None, mapped.take([1, 2])) == 0
    assert resolve_workers(3, mapped) == 3  # a count given outright wins
    assert resolve_workers("auto", _LazyRows()) == 4  # decoding: workers as before
    augmenting = ArrayFileDataset(npz, augment=_noise)
    assert resolve_workers("auto", augmenting) == 4  # per-sample views are CPU work for workers
    import edgekd.data.validate as validate

    monkeypatch.setattr(validate, "physical_memory", lambda: 2 * mapped.nbytes - 2)
    assert resolve_workers("auto", mapped) == 4  # beyond the page cache: workers hide the reads
    monkeypatch.setattr(validate, "physical_memory", lambda: 2 * mapped.nbytes)
    assert resolve_workers("auto", mapped) == 0
    monkeypatch.setenv(batches.WORKERS_ENV, "2")
    assert resolve_workers("auto", mapped) == 2  # the environment says what "auto" means


# --- the training feed ---


def _epoch(feed: LoaderFeed, sampler: ShuffledBatches, view, start: int = 0) -> list:
    sampler.start_epoch()
    sampler.next_batch = start
    return list(feed.epoch(sampler, view))


def _expected(dataset: MapDataset, sampler: ShuffledBatches, view) -> list:
    """The epoch under way, every batch read sample by sample (the order the sampler holds)."""
    out = []
    for b, idx in enumerate(sampler._batches):
        keys = idx.tolist() if view is None else [(i, view) for i in idx.tolist()]
        out.append((b, *_slow(dataset, keys)))
    return out


@pytest.mark.parametrize("augment", [None, _noise], ids=["evaluation views", "training views"])
def test_zero_workers_read_lazy_batches_here_without_a_dataloader(monkeypatch, npz, augment):
    dataset = ArrayFileDataset(npz, augment=augment)
    sampler = ShuffledBatches(len(dataset), 6, DistContext(), seed=4)

    def no_loader(*args, **kwargs):
        raise AssertionError("0 workers built a DataLoader")

    monkeypatch.setattr(torch.utils.data, "DataLoader", no_loader)
    feed = LoaderFeed(dataset, sampler, 0, torch.device("cpu"))
    view = 1
    got = _epoch(feed, sampler, view)
    expected = _expected(dataset, sampler, view if augment is not None else None)
    assert [b for b, *_ in got] == list(range(len(sampler))) == [b for b, *_ in expected]
    for g, e in zip(got, expected, strict=True):
        _assert_batches_equal(g[1:], e[1:])
    resumed = _epoch(feed, sampler, view, start=4)  # a resumed epoch: the batches left, in order
    assert [b for b, *_ in resumed] == list(range(4, len(sampler)))
    for g, e in zip(resumed, expected[4:], strict=True):
        _assert_batches_equal(g[1:], e[1:])
    feed.close()


def test_a_bad_frame_read_here_is_the_readers_one_line_error(tmp_path):
    data = _arrays()
    data.x[9, 1, 3] = np.nan
    path = tmp_path / "bad.npz"
    np.savez(path, x=data.x, y=data.y)  # save_npz refuses NaN; a file from elsewhere may hold it
    dataset = ArrayFileDataset(path)
    sampler = ShuffledBatches(len(dataset), 40, DistContext(), seed=0)
    feed = LoaderFeed(dataset, sampler, 0, torch.device("cpu"))
    with pytest.raises(
        InputFileError, match=r"bad\.npz: x holds NaN or infinite values \(first at frame 9\)"
    ):
        _epoch(feed, sampler, None)


def workers_side(job: dict) -> None:
    """Subprocess: the feed's batches with 2 workers, keyed_loader's, and a bad frame's error.
    Batches must cross over whole: the per-sample collate function is not to be called."""

    def per_sample(items):
        raise AssertionError(f"a batch of {len(items)} collated sample by sample")

    batches._collate = per_sample  # forked workers inherit it
    out = Path(job["out"])
    for name, augment in (("plain", None), ("views", _noise)):
        dataset = ArrayFileDataset(job["npz"], augment=augment)
        sampler = ShuffledBatches(len(dataset), 6, DistContext(), seed=4)
        feed = LoaderFeed(dataset, sampler, 2, torch.device("cpu"))
        assert feed.loader is not None  # 2 workers: a DataLoader
        got = _epoch(feed, sampler, 1) + _epoch(feed, sampler, 1, start=4)
        feed.close()
        torch.save(got, out / f"feed-{name}.pt")
    dataset = ArrayFileDataset(job["npz"])
    order = [np.array([5, 1, 2]), np.array([39, 0])]
    torch.save([tuple(b) for b in keyed_loader(dataset, order, 2)], out / "keyed.pt")
    bad = ArrayFileDataset(job["bad"])
    feed = LoaderFeed(bad, ShuffledBatches(len(bad), 40, DistContext(), seed=0), 2, torch.device("cpu"))
    try:
        _epoch(feed, feed.keys.sampler, None)
        error = None
    except InputFileError as exc:
        error = exc.one_line()
    feed.close()
    (out / "error.json").write_text(json.dumps(error))


def test_workers_hand_over_the_batches_read_here(npz, tmp_path):
    data = _arrays()
    data.x[9, 1, 3] = np.inf
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=data.x, y=data.y)
    job = {"out": str(tmp_path), "npz": str(npz), "bad": str(bad)}
    code = (
        "import json, sys; from tests.distill.test_feed_speedpaths import workers_side; "
        "workers_side(json.loads(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(job)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, augment in (("plain", None), ("views", _noise)):
        dataset = ArrayFileDataset(npz, augment=augment)
        sampler = ShuffledBatches(len(dataset), 6, DistContext(), seed=4)
        here = LoaderFeed(dataset, sampler, 0, torch.device("cpu"))
        expected = _epoch(here, sampler, 1) + _epoch(here, sampler, 1, start=4)
        there = torch.load(tmp_path / f"feed-{name}.pt", weights_only=True)
        assert [b for b, *_ in there] == [b for b, *_ in expected]
        for g, e in zip(there, expected, strict=True):
            _assert_batches_equal(g[1:], e[1:])
    keyed = torch.load(tmp_path / "keyed.pt", weights_only=True)
    mapped = ArrayFileDataset(npz)
    for got, keys in zip(keyed, ([5, 1, 2], [39, 0]), strict=True):
        _assert_batches_equal(got, _slow(mapped, keys))
    assert json.loads((tmp_path / "error.json").read_text()) == (
        f"dataset {bad}: x holds NaN or infinite values (first at frame 9) "
        "(fix: clean or regenerate the data; edgekd reads finite numbers only)"
    )
