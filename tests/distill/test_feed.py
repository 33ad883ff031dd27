"""Training on lazily read data (``edgekd.distill.feed``): the same weights whatever the number
of DataLoader workers, exact resume with workers after SIGKILL, each DDP rank reading only its
shard, and the teacher cache of a lazy dataset (``edgekd.distill.dataset_cache``).

Everything that starts DataLoader workers runs in a fresh interpreter (see
tests/data/test_workers.py: workers in the pytest process can break later tests). The
``*_side`` functions below are what those interpreters run; the tests compare their files with
runs made here with ``num_workers: 0`` (the same DataLoader path, read in this process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data import batches
from edgekd.data.artifact import open_data, open_lazy_source
from edgekd.data.batches import loader_options, model_input
from edgekd.data.image_augment import ImageAugment
from edgekd.data.mapstyle import IndexedDataset, MemoryDataset
from edgekd.distill import dataset_cache
from edgekd.distill.augment import augment_frames, with_image_views
from edgekd.distill.config import AugmentConfig, KDConfig, TrainConfig
from edgekd.distill.distributed import DistContext, global_batches
from edgekd.distill.feed import LoaderFeed, MemoryFeed, make_feed
from edgekd.distill.run_state import ShuffledBatches
from edgekd.distill.train import distill, train_supervised
from edgekd.models import create_model
from tests.data.test_artifact import image_spec, write_image_folder, write_image_index, write_tones_npz

pytest.importorskip("PIL.Image", reason="Pillow is not installed")

ROOT = Path(__file__).resolve().parents[2]
IMAGE_VIEWS = AugmentConfig(image=ImageAugment(), views=2, seed=5)
IQ_VIEWS = AugmentConfig(time_shift=3, phase_rotation=True, views=2, seed=11)


@pytest.fixture(autouse=True)
def in_process_reads(monkeypatch):
    """workers "auto" reads in this process here; the subprocesses start real workers."""
    monkeypatch.setattr(batches, "MAX_AUTO_WORKERS", 0)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """An uncompressed npz of IQ tones, an image folder, and its data index with the uint8 cache."""
    root = tmp_path_factory.mktemp("feed")
    folder = write_image_folder(root / "img", per_class=16)
    return {
        "npz": str(write_tones_npz(root / "tones.npz", n=96, length=32)),
        "folder": str(folder),
        "index": str(write_image_index(folder, root / "run")),
    }


def _python(code: str, *args: str, timeout: float = 240, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, timeout=timeout, check=False, **kwargs
    )


def _side(name: str, job: dict[str, Any]) -> subprocess.CompletedProcess:
    """Run ``name(job)`` of this module in a fresh interpreter (its output captured)."""
    code = f"import json, sys; from tests.distill.test_feed import {name}; {name}(json.loads(sys.argv[1]))"
    return _python(code, json.dumps(job), capture_output=True, text=True)


# --- what a training run reads ---


def tiny_image_net(seed: int) -> nn.Module:
    """[N, 3, S, S] -> [N, 2]: conv, BatchNorm, pool, linear (a few hundred weights)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def open_kind(kind: str, paths: dict[str, str]) -> tuple[Any, nn.Module, AugmentConfig]:
    """(dataset, a fresh model for it, the augmentation) of one kind of training data:
    the npz memory-mapped or in memory (with IQ views: applied to the batch, not by the
    dataset), the image cache of a data index, or the image folder decoded on access (both
    raw uint8, with image views drawn by the dataset)."""
    if kind.startswith("npz"):
        dataset = open_data(paths["npz"], storage=kind.removeprefix("npz-"))
        torch.manual_seed(0)
        return dataset, create_model("cnn1d_small", 4, 2, width=4), IQ_VIEWS
    if kind == "images-cache":
        dataset = open_data(paths["index"])
    else:
        folder = Path(paths["folder"])
        dataset = open_lazy_source(image_spec(folder), folder)
    return dataset, tiny_image_net(0), IMAGE_VIEWS


def train_weights(kind: str, paths: dict[str, str], workers: int) -> dict[str, torch.Tensor]:
    """The model's weights after 2 epochs of ``train_supervised`` on ``kind`` with ``workers``."""
    dataset, model, augment = open_kind(kind, paths)
    cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        lr=0.05,
        warmup_epochs=0,
        device="cpu",
        num_threads=1,
        deterministic=True,
        num_workers=workers,
        augment=augment,
    )
    train_supervised(model, dataset.subset("train"), dataset.subset("val"), cfg)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def view_keys(dataset: Any, views: int = 3) -> list[tuple[int, int]]:
    return [(i, v) for v in range(views) for i in range(len(dataset))]


def image_views(kind: str, paths: dict[str, str]) -> Any:
    """The training split of ``kind`` drawing IMAGE_VIEWS' views."""
    return with_image_views(open_kind(kind, paths)[0].subset("train"), IMAGE_VIEWS)


def workers_side(job: dict[str, Any]) -> None:
    """Subprocess: views read by 2 DataLoader workers, and the weights of training runs with
    1 and 2 workers, into ``job["out"]``."""
    out, paths = Path(job["out"]), job["paths"]
    for kind in ("images-cache", "images-folder"):
        views = image_views(kind, paths)
        keys = view_keys(views)
        batches_of_keys = [keys[s : s + 5] for s in range(0, len(keys), 5)]
        loader = torch.utils.data.DataLoader(
            IndexedDataset(views), batch_sampler=batches_of_keys, **loader_options(2)
        )
        torch.save(torch.cat([x for x, _, _ in loader]), out / f"views-{kind}.pt")
    for kind, workers in job["runs"]:
        torch.save(train_weights(kind, paths, workers), out / f"{kind}-{workers}.pt")


@pytest.fixture(scope="module")
def worker_files(paths, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("workers")
    runs = [("npz-lazy", 1), ("npz-lazy", 2), ("images-cache", 1), ("images-cache", 2), ("images-folder", 2)]
    done = _side("workers_side", {"out": str(out), "paths": paths, "runs": runs})
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


def test_a_view_is_the_same_in_a_worker_and_in_this_process(paths, worker_files):
    for kind in ("images-cache", "images-folder"):
        views = image_views(kind, paths)
        keys = view_keys(views)
        here = torch.stack([x for x, _ in views.__getitems__(keys)])
        there = torch.load(worker_files / f"views-{kind}.pt", weights_only=True)
        assert here.dtype == torch.uint8 and torch.equal(here, there), kind
        n = len(views)
        plain = torch.stack([x for x, _ in views.__getitems__(list(range(n)))])
        assert not torch.equal(here[:n], plain)  # a view is not the image itself
        assert not torch.equal(here[:n], here[n : 2 * n])  # view 0 and view 1 differ


@pytest.mark.parametrize("kind", ["npz-lazy", "images-cache"])
def test_weights_are_bit_identical_with_0_1_and_2_workers(paths, worker_files, kind):
    here = train_weights(kind, paths, 0)
    for workers in (1, 2):
        there = torch.load(worker_files / f"{kind}-{workers}.pt", weights_only=True)
        _assert_same_weights(here, there, f"{kind}, {workers} workers")


def test_images_decoded_by_workers_train_like_this_process(paths, worker_files):
    here = train_weights("images-folder", paths, 0)
    there = torch.load(worker_files / "images-folder-2.pt", weights_only=True)
    _assert_same_weights(here, there, "image folder, 2 workers")


def test_memory_mapped_npz_trains_like_the_npz_in_memory(paths):
    lazy = open_kind("npz-lazy", paths)[0].subset("train")
    memory = open_kind("npz-memory", paths)[0].subset("train")
    sampler = ShuffledBatches(len(lazy), 8, DistContext(), 0)
    device = torch.device("cpu")
    assert isinstance(make_feed(memory, sampler, 0, device), MemoryFeed)
    assert isinstance(make_feed(lazy, sampler, 0, device), LoaderFeed)
    _assert_same_weights(
        train_weights("npz-lazy", paths, 0), train_weights("npz-memory", paths, 0), "lazy against memory"
    )


def test_distilling_from_the_sharded_cache_matches_the_in_memory_cache(paths, tmp_path):
    """Lazy data: teacher logits in memory-mapped shards (dataset_cache); data in memory: one
    cache file (teacher_cache). The same logits, so the same student."""
    students = {}
    for storage in ("lazy", "memory"):
        dataset, student, augment = open_kind(f"npz-{storage}", paths)
        cfg = TrainConfig(
            epochs=2, batch_size=8, lr=0.05, device="cpu", num_threads=1, num_workers=0, augment=augment
        )
        train, val = dataset.subset("train"), dataset.subset("val")
        distill(student, CountingTeacher(), train, val, cfg, KDConfig(), out_dir=tmp_path / storage)
        students[storage] = student.state_dict()
    assert list((tmp_path / "lazy" / "teacher_cache").rglob("shard-*.values.npy"))
    assert list((tmp_path / "memory" / "teacher_cache").glob("teacher-logits-*.pt"))
    _assert_same_weights(students["lazy"], students["memory"], "distilled, lazy against memory")


# --- exact resume with workers, killed mid-epoch ---


RESUME_CFG = {"epochs": 2, "batch_size": 4, "lr": 0.05, "checkpoint_every": 2, "ema": 0.9}


def distill_images(paths: dict[str, str], out_dir: Path, workers: int, kill_at: int | None, resume: bool):
    """Distil tiny_image_net(1) into tiny_image_net(0) on the image cache with 2 image views;
    SIGKILL this very process right after optimizer step ``kill_at``. Returns the student."""
    dataset = open_data(paths["index"])
    teacher, student = tiny_image_net(1), tiny_image_net(0)
    cfg = TrainConfig(
        **RESUME_CFG,
        device="cpu",
        num_threads=1,
        deterministic=True,
        num_workers=workers,
        augment=IMAGE_VIEWS,
    )

    def on_step(step: int) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train, val = dataset.subset("train"), dataset.subset("val")
    distill(student, teacher, train, val, cfg, KDConfig(), out_dir=out_dir, resume=resume, on_step=on_step)
    return student


def resume_side(job: dict[str, Any]) -> None:
    """Subprocess: distil with 2 workers, killed at ``job["kill_at"]`` or resumed."""
    student = distill_images(job["paths"], Path(job["out"]), 2, job["kill_at"], job["resume"])
    torch.save(student.state_dict(), job["weights"])


def test_sigkill_mid_epoch_with_workers_then_resume_is_bit_identical(paths, tmp_path):
    train = len(open_data(paths["index"]).subset("train"))
    steps = train // RESUME_CFG["batch_size"]
    assert steps >= 4  # the kill below lands mid-way through epoch 2, after a snapshot in it
    kill_at = steps + 3  # epoch 2, batch 3: the snapshot taken after its batch 2 is resumed
    broken = tmp_path / "broken"
    job = {"paths": paths, "out": str(broken), "weights": str(tmp_path / "x.pt")}
    with open(tmp_path / "killed.log", "w") as log:  # a file, not a pipe its dying workers hold
        killed = _python(
            "import json, sys; from tests.distill.test_feed import resume_side; "
            "resume_side(json.loads(sys.argv[1]))",
            json.dumps({**job, "kill_at": kill_at, "resume": False}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    assert killed.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert (broken / "train_state.pt").is_file() and not (tmp_path / "x.pt").exists()
    state = torch.load(broken / "train_state.pt", weights_only=True)
    assert state["epoch"] == 2 and 0 < state["sampler"]["next_batch"] < steps  # mid-epoch
    resumed = _side(
        "resume_side", {**job, "weights": str(tmp_path / "resumed.pt"), "kill_at": None, "resume": True}
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = distill_images(paths, tmp_path / "whole", 0, None, False)  # uninterrupted, in this process
    _assert_same_weights(
        whole.state_dict(), torch.load(tmp_path / "resumed.pt", weights_only=True), "resumed with 2 workers"
    )


# --- DDP: each rank reads its own rows of every global batch ---


class RecordingDataset(MemoryDataset):
    """A MemoryDataset that records the keys every ``__getitems__`` call gets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[list[Any]] = []

    def __getitems__(self, keys):
        self.calls.append(list(keys))
        return super().__getitems__(keys)


def _rank_reads(data, frames: int, batch: int, ctx: DistContext, view: int, start: int = 0):
    """The keys the dataset got, and the idx of every batch the feed gave, on rank ``ctx.rank``
    for one epoch (from batch ``start``), read in this process."""
    dataset = RecordingDataset(data, augment=lambda x, seed: x)  # keys (i, view): an augmenting dataset
    sampler = ShuffledBatches(frames, batch, ctx, seed=3)
    feed = LoaderFeed(dataset, sampler, 0, torch.device("cpu"))
    sampler.start_epoch()
    sampler.next_batch = start
    got = [(b, idx.tolist()) for b, _x, _y, idx in feed.epoch(sampler, view)]
    feed.close()
    return dataset.calls, got, sampler.order


@pytest.mark.parametrize(("frames", "world"), [(51, 3), (51, 2), (50, 4)])
def test_each_rank_reads_only_its_shard_of_every_global_batch(frames, world):
    from edgekd.data.dataset import ArrayDataset

    data = ArrayDataset(
        np.arange(frames * 2 * 4, dtype=np.float32).reshape(frames, 2, 4), np.arange(frames) % 2, ["a", "b"]
    )
    batch = 2 * world + world  # 3 rows per rank
    reads = [
        _rank_reads(data, frames, batch, DistContext(rank=r, world_size=world), view=1) for r in range(world)
    ]
    order = reads[0][2]
    assert all(torch.equal(r[2], order) for r in reads)  # one permutation, drawn alike on every rank
    expected = global_batches(order, batch, world)
    for r, (calls, got, _) in enumerate(reads):
        assert len(got) == len(expected)  # every rank steps the same number of times
        assert [b for b, _ in got] == list(range(len(expected)))
        assert calls == [[(i, 1) for i in rows] for _, rows in got]  # the epoch's view, and nothing else
        for (_, rows), whole in zip(got, expected, strict=True):
            assert rows == whole[r::world].tolist()
    seen: list[int] = []
    for b, whole in enumerate(expected):
        shares = [set(reads[r][1][b][1]) for r in range(world)]
        assert set().union(*shares) == set(whole.tolist())
        positions = [reads[r][1][b][1] for r in range(world)]
        assert sum(len(p) for p in positions) == len(whole)  # disjoint positions of the global batch
        seen.extend(whole.tolist())
    pad = (-frames) % world
    dropped = (frames + pad) - len(seen)  # a last batch too small for 2 rows per rank
    assert dropped < 2 * world
    assert len(set(seen)) == min(frames, len(seen))  # only the padding rows repeat
    if dropped == 0:
        assert set(seen) == set(range(frames))


def test_a_resumed_epoch_reads_only_the_batches_left():
    from edgekd.data.dataset import ArrayDataset

    data = ArrayDataset(np.zeros((40, 2, 4), np.float32), np.arange(40) % 2, ["a", "b"])
    ctx = DistContext(rank=1, world_size=2)
    calls, got, order = _rank_reads(data, 40, 8, ctx, view=0, start=3)
    expected = global_batches(order, 8, 2)[3:]
    assert [b for b, _ in got] == [3, 4]
    assert [rows for _, rows in got] == [whole[1::2].tolist() for whole in expected]
    assert len(calls) == 2


# --- the teacher cache of a lazy dataset ---


class CountingTeacher(nn.Module):
    """A fixed random linear teacher over [N, 2, L] frames, counting the frames it scores."""

    def __init__(self, length: int = 32, classes: int = 4, fail_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * length, classes))
        self.frames = 0
        self.fail_after = fail_after  # stop (as a kill would) once this many frames are scored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise KeyboardInterrupt
        self.frames += len(x)
        return self.net(x)


def _cache(teacher, dataset, augment, cache_dir, kd: KDConfig | None = None):
    return dataset_cache.dataset_logits_cache(
        teacher, dataset, augment, kd or KDConfig(), cache_dir=cache_dir, batch_size=16, workers=0
    )


def test_the_cache_of_a_lazy_dataset_holds_the_teacher_on_every_view(paths, tmp_path):
    train = open_data(paths["npz"], storage="lazy").subset("train")
    teacher = CountingTeacher()
    cached = _cache(teacher, train, IQ_VIEWS, tmp_path)
    assert teacher.frames == 2 * len(train) and (cached.views, cached.frames) == (2, len(train))
    x = torch.stack([x for x, _ in train.__getitems__(list(range(len(train))))])
    with torch.no_grad():
        for view in range(2):
            expected = teacher.net(augment_frames(x, np.arange(len(train)), view, IQ_VIEWS))
            torch.testing.assert_close(cached.dense(view), expected.half().float(), rtol=0, atol=0)
    assert not torch.equal(cached.dense(0), cached.dense(1))  # two views, two sets of logits

    again = _cache(teacher, train, IQ_VIEWS, tmp_path)
    assert teacher.frames == 2 * len(train)  # reused: the teacher did not run again
    assert again.folder == cached.folder and torch.equal(again.dense(1), cached.dense(1))


def test_a_changed_npz_changes_the_cache_key(paths, tmp_path):
    npz = tmp_path / "tones.npz"
    npz.write_bytes(Path(paths["npz"]).read_bytes())
    digest = dataset_cache.lazy_data_digest
    before = digest(open_data(npz, storage="lazy"))
    assert digest(open_data(npz, storage="lazy")) == before  # stable
    stat = npz.stat()
    os.utime(npz, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert digest(open_data(npz, storage="lazy")) != before  # touched
    # Other labels, same size and modification time: the labels alone change the key.
    lazy = open_data(npz, storage="lazy")
    from edgekd.data.dataset import ArrayDataset

    x = np.stack([x.numpy() for x, _ in lazy.__getitems__(list(range(len(lazy))))])
    ArrayDataset(x, (lazy.y + 1) % 4, lazy.class_names, snr=lazy.snr, split=lazy.split).save_npz(npz)
    assert npz.stat().st_size == stat.st_size
    os.utime(npz, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digest(open_data(npz, storage="lazy")) != before
    assert digest(lazy.subset("train")) != digest(lazy.subset("val"))  # other rows

    teacher = CountingTeacher()
    _cache(teacher, open_data(npz, storage="lazy"), AugmentConfig(), tmp_path / "c")
    os.utime(npz, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    _cache(teacher, open_data(npz, storage="lazy"), AugmentConfig(), tmp_path / "c")
    assert teacher.frames == 2 * len(lazy)  # built twice: the touched file is other data
    assert len([p for p in (tmp_path / "c").iterdir() if p.is_dir()]) == 2


def test_the_cache_of_image_views_holds_the_teacher_on_the_views_workers_draw(paths, tmp_path):
    views = image_views("images-cache", paths)
    teacher = tiny_image_net(1).eval()
    cached = _cache(teacher, views, IMAGE_VIEWS, tmp_path)
    with torch.no_grad():
        for view in range(2):
            keys = [(i, view) for i in range(len(views))]
            x = torch.stack([x for x, _ in views.__getitems__(keys)])
            expected = teacher(model_input(x, views, "cpu"))
            torch.testing.assert_close(cached.dense(view), expected.half().float(), rtol=0, atol=1e-3)
    assert not torch.equal(cached.dense(0), cached.dense(1))
    plain = _cache(teacher, open_data(paths["index"]).subset("train"), AugmentConfig(), tmp_path)
    assert plain.folder != cached.folder  # the views are part of the key


def test_an_interrupted_cache_build_resumes_at_the_unfinished_view(paths, tmp_path):
    train = open_data(paths["npz"], storage="lazy").subset("train")
    with pytest.raises(KeyboardInterrupt):  # view 0's shard is written, view 1's is not
        _cache(CountingTeacher(fail_after=len(train)), train, IQ_VIEWS, tmp_path)
    assert not list(tmp_path.rglob("index.json"))  # not complete
    teacher = CountingTeacher()
    cached = _cache(teacher, train, IQ_VIEWS, tmp_path)
    assert teacher.frames == len(train)  # only view 1 was computed again
    fresh = _cache(CountingTeacher(), train, IQ_VIEWS, tmp_path / "fresh")
    for view in range(2):
        assert torch.equal(cached.dense(view), fresh.dense(view))


def test_the_key_of_an_image_folder_read_lazily_follows_its_images(paths, tmp_path):
    """A LazyImageFolder (decoded on access) has no single file: its images identify it."""
    from PIL import Image

    folder = write_image_folder(tmp_path / "img", per_class=6)
    before = dataset_cache.lazy_data_digest(open_lazy_source(image_spec(folder), folder))
    first = sorted((folder / "NORMAL").glob("*.jpg"))[0]
    Image.fromarray(np.zeros((20, 24), np.uint8), "L").save(first)  # same name and label, other pixels
    after = dataset_cache.lazy_data_digest(open_lazy_source(image_spec(folder), folder))
    assert after != before


def test_the_key_of_an_npy_folder_follows_its_arrays(tmp_path):
    """A dataset folder (x.npy, y.npy...) rewritten in place keeps the folder's own size and
    time: the arrays' files identify it."""
    from edgekd.data.lazy_arrays import ArrayFileDataset

    folder = tmp_path / "frames"
    folder.mkdir()
    x = np.random.default_rng(0).standard_normal((12, 2, 8)).astype(np.float32)
    np.save(folder / "y.npy", np.arange(12) % 2)
    np.save(folder / "x.npy", x)
    before = dataset_cache.lazy_data_digest(ArrayFileDataset(folder))
    stat = (folder / "x.npy").stat()
    np.save(folder / "x.npy", 2 * x)  # same size, in place
    os.utime(folder / "x.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert dataset_cache.lazy_data_digest(ArrayFileDataset(folder)) != before
