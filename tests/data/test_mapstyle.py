"""The map-style contract (in memory), seed-pure sample views, and the seeded samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.data.dataset import ArrayDataset
from edgekd.data.images import augment as image_augment
from edgekd.data.images import view_seed
from edgekd.data.mapstyle import IndexedDataset, MemoryDataset, sample_rng, sample_seed
from edgekd.data.samplers import ChunkBatchSampler, SeededSampler, block_rows_for, chunk_batches
from edgekd.errors import ConfigError, InputFileError


def _arrays(n: int = 30) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(
        x=rng.standard_normal((n, 2, 16)).astype(np.float32),
        y=np.arange(n) % 3,
        class_names=["a", "b", "c"],
        snr=(np.arange(n) % 5) * 2 - 4,
        split=np.arange(n) % 3,
    )


def _noise(x: np.ndarray, seed: int) -> np.ndarray:
    return x + np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)


def test_sample_rng_is_a_pure_function_of_seed_epoch_index():
    assert sample_rng(1, 2, 3).random() == sample_rng(1, 2, 3).random()
    draws = {sample_rng(1, e, i).random() for e in range(3) for i in range(3)} | {
        sample_rng(2, 0, 0).random()
    }
    assert len(draws) == 10
    assert sample_seed(5, 1, 7) == view_seed(5, 1, 7)  # images.augment(image, seed) takes the same seeds


def test_memory_dataset_contract():
    data = _arrays()
    ds = MemoryDataset(data)
    assert (
        len(ds) == 30 and ds.num_classes == 3 and ds.input_shape == (2, 16) and ds.nbytes == 30 * 2 * 16 * 4
    )
    x, y = ds[4]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (2, 16) and y == 1
    np.testing.assert_array_equal(x.numpy(), data.x[4])
    np.testing.assert_array_equal(ds[-1][0].numpy(), data.x[-1])
    with pytest.raises(IndexError):
        ds[30]
    train = ds.subset("train")
    assert len(train) == 10 and set(train.split.tolist()) == {0}
    np.testing.assert_array_equal(train[1][0].numpy(), data.x[3])
    assert train.snr.tolist() == data.snr[::3].tolist()
    with pytest.raises(ConfigError):
        ds.split_indices("dev")
    np.testing.assert_array_equal(ds.take([5, 2]).to_array_dataset().x, data.x[[5, 2]])
    with pytest.raises(InputFileError, match="'val' split is empty"):
        ds.take([0, 3]).subset("val")


def test_training_views_depend_on_seed_epoch_index_only():
    data = _arrays()
    ds = MemoryDataset(data, augment=_noise, augment_seed=7)
    plain = ds[3][0]
    view = ds[(3, 2)][0]
    assert not torch.equal(plain, view) and torch.equal(view, ds[(3, 2)][0])
    assert not torch.equal(view, ds[(3, 1)][0])
    expected = _noise(data.x[3], sample_seed(7, 2, 3))
    np.testing.assert_array_equal(view.numpy(), expected)
    batch = ds.__getitems__([(3, 2), 3, (4, 0)])
    assert torch.equal(batch[0][0], view) and torch.equal(batch[1][0], plain)
    indexed = IndexedDataset(ds)
    x, y, i = indexed[(-2, 1)]
    assert i == 28 and y == int(data.y[28]) and torch.equal(x, ds[(28, 1)][0])


def test_image_augment_plugs_in_as_is():
    images = ArrayDataset(
        x=np.random.default_rng(1).random((4, 3, 8, 8)), y=[0, 1, 0, 1], class_names=["a", "b"]
    )
    ds = MemoryDataset(images, augment=image_augment, augment_seed=3)
    np.testing.assert_array_equal(ds[(2, 5)][0].numpy(), image_augment(images.x[2], view_seed(3, 5, 2)))


def test_seeded_sampler_orders_by_seed_and_epoch_and_shards():
    sampler = SeededSampler(50, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first == list(SeededSampler(50, seed=1))
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(50))
    assert list(SeededSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    shards = [SeededSampler(50, seed=1, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [17, 17, 17] and all(len(list(s)) == 17 for s in shards)
    assert set().union(*(set(s) for s in shards)) == set(range(50))
    keyed = SeededSampler(4, seed=0, with_epoch=True)
    keyed.set_epoch(9)
    assert sorted(keyed) == [(i, 9) for i in range(4)]
    with pytest.raises(ConfigError):
        SeededSampler(4, rank=2, world_size=2)


def test_chunk_batches_cover_every_sample_in_few_blocks():
    rows = np.arange(1000, 1400)[np.random.default_rng(0).random(400) < 0.7]  # a split of a file
    block = 16
    sampler = ChunkBatchSampler(rows, 32, block_rows=block, seed=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) and sorted(i for b in batches for i in b) == list(range(len(rows)))
    for batch in batches:
        assert len(np.unique(rows[batch] // block)) <= 32 // 10 + 2  # ~B / (0.7 * block) blocks, +1
    assert batches == list(ChunkBatchSampler(rows, 32, block_rows=block, seed=2))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ordered = list(ChunkBatchSampler(rows, 32, block_rows=block, shuffle=False))
    assert [i for b in ordered for i in b] == list(range(len(rows)))  # rows ascending: file order
    dropped = ChunkBatchSampler(rows, 32, block_rows=block, drop_last=True)
    assert all(len(b) == 32 for b in dropped) and len(list(dropped)) == len(dropped) == len(rows) // 32
    shards = [list(ChunkBatchSampler(rows, 32, block_rows=block, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(sampler) // 2 + len(sampler) % 2


def test_block_rows_follow_batch_and_chunks():
    assert block_rows_for(256) == 32 and block_rows_for(256, chunk_rows=12) == 36
    assert block_rows_for(4, blocks_per_batch=8) == 1 and block_rows_for(64, chunk_rows=4096) == 4096
    with pytest.raises(ConfigError):
        block_rows_for(0)
    ds = MemoryDataset(_arrays())
    assert chunk_batches(ds, 8).block_rows == 1
