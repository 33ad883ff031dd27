"""Distillation on unlabelled frames (issue #20, part 1).

- The label terms average over the labelled rows of a batch alone; the KD term sees every row;
  terms that need a class take the teacher's top-1 on a pool row.
- Batches mix the pool in at ``distill.kd.unlabelled_share``; the order without a pool is the
  one it always was.
- The pool's own labels are never read; the teacher cache covers its frames.
- Recipes: ``data.unlabelled`` (any source; an npz of ``x`` alone) and ``data.hide_labels``
  (the teacher trains on the labelled share only); the Python API takes ``unlabelled=``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import edgekd
from edgekd.cli.main import cli
from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.data.lazy_arrays import ArrayFileDataset
from edgekd.data.pooled import PooledDataset, pool_training_frames
from edgekd.data.sources import DataSpec
from edgekd.data.unlabelled_source import PoolFileDataset, open_unlabelled, split_hidden_labels
from edgekd.distill import distributed as ddp
from edgekd.distill.config import KDConfig, LossTerm, TrainConfig
from edgekd.distill.losses import dkd_loss, kd_divergence, kd_loss, labelled_cross_entropy
from edgekd.distill.objective import DistillObjective
from edgekd.distill.run_state import ShuffledBatches
from edgekd.distill.train import distill, train_supervised
from edgekd.distill.unlabelled import UNLABELLED, hidden_label_rows, mixed_order, pool_rows
from edgekd.errors import ConfigError, InputFileError, ShapeError
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset
from tests.pipeline.files import Files, build

FAST = TrainConfig(epochs=1, batch_size=64, device="cpu")


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn1d_small", 4, width=4)


@pytest.fixture(scope="module")
def teacher(tones) -> torch.nn.Module:
    model = _net(0)
    train_supervised(model, *tones, TrainConfig(epochs=2, batch_size=64, lr=1e-2, device="cpu"))
    return model


# ------------------------------------------------------------------------------ the loss terms


def test_labelled_cross_entropy_is_plain_ce_on_labelled_rows_and_ignores_the_pool() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(labelled_cross_entropy(logits, y), F.cross_entropy(logits, y))
    marked = y.clone()
    marked[[1, 4, 6]] = UNLABELLED
    keep = marked >= 0
    assert torch.allclose(labelled_cross_entropy(logits, marked), F.cross_entropy(logits[keep], y[keep]))
    smooth = labelled_cross_entropy(logits, marked, 0.1)
    assert torch.allclose(smooth, F.cross_entropy(logits[keep], y[keep], label_smoothing=0.1))


def test_a_batch_of_unlabelled_rows_alone_gives_zero_and_finite_gradients() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    loss = labelled_cross_entropy(logits, torch.full((4,), UNLABELLED))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_kd_takes_the_soft_term_over_every_row_and_the_labels_over_the_labelled() -> None:
    torch.manual_seed(1)
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    y[:3] = UNLABELLED
    got = kd_loss(s, t, y, temperature=2.0, alpha=0.6)
    want = 0.6 * kd_divergence(s, t, 2.0) + 0.4 * F.cross_entropy(s[3:], y[3:])
    assert torch.allclose(got, want)


def test_terms_that_need_a_class_take_the_teachers_top1_on_a_pool_row() -> None:
    torch.manual_seed(2)
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    marked = y.clone()
    marked[::2] = UNLABELLED
    objective = DistillObjective([LossTerm("dkd", 1.0, {"beta": 2.0})])
    objective.has_unlabelled = True
    got, _ = objective(s, t, marked, {}, {})
    classes = torch.where(marked >= 0, marked, t.argmax(1))
    assert torch.allclose(got, dkd_loss(s, t, classes, beta=2.0))
    objective.has_unlabelled = False  # without a pool the targets pass through untouched
    assert torch.allclose(objective(s, t, y, {}, {})[0], dkd_loss(s, t, y, beta=2.0))


# ------------------------------------------------------------------------------ batch mixing


def test_mixed_batches_hold_the_share_of_pool_rows_and_every_row_is_a_real_one() -> None:
    rng = np.random.default_rng(0)
    order = mixed_order(rng, rng.permutation, 40, 200, 32, 0.75)
    assert len(order) == 200 and order.min() >= 0 and order.max() < 200
    for start in range(0, 200, 32):
        batch = order[start : start + 32]
        assert int((batch >= 40).sum()) == pool_rows(len(batch), 0.75)
    # 50 labelled draws from 40 labelled rows (a fresh shuffle each pass): every one of them is seen
    assert set(order[order < 40].tolist()) == set(range(40))


def test_a_batch_keeps_one_row_of_each_kind() -> None:
    assert pool_rows(10, 0.99) == 9 and pool_rows(10, 0.01) == 1 and pool_rows(1, 0.5) == 0


def test_without_a_pool_the_batch_order_is_the_seeded_permutation_it_always_was() -> None:
    ctx = ddp.DistContext()
    sampler = ShuffledBatches(100, 10, ctx, seed=7)
    sampler.start_epoch()
    assert torch.equal(sampler.order, torch.from_numpy(np.random.default_rng(7).permutation(100)))


def test_a_mixed_sampler_resumes_to_the_same_order() -> None:
    ctx = ddp.DistContext()
    first = ShuffledBatches(90, 16, ctx, seed=3, mix=(30, 0.5))
    first.start_epoch()
    state = first.state_dict()
    again = ShuffledBatches(90, 16, ctx, seed=99, mix=(30, 0.5))
    again.load_state_dict(state)
    again.start_epoch()
    assert torch.equal(first.order, again.order)
    first.end_epoch()
    again.end_epoch()
    first.start_epoch()
    again.start_epoch()
    assert torch.equal(first.order, again.order)


# ------------------------------------------------------------------------------ hidden labels


def test_hidden_labels_are_a_share_of_every_class_and_snr_cell() -> None:
    y = np.repeat(np.arange(4), 50)
    snr = np.tile(np.repeat([-10, 10], 25), 4)
    keep, hidden = hidden_label_rows(y, snr, 0.8, seed=0)
    assert len(np.intersect1d(keep, hidden)) == 0 and len(keep) + len(hidden) == 200
    for cls in range(4):
        for db in (-10, 10):
            cell = np.flatnonzero((y == cls) & (snr == db))
            assert np.isin(cell, hidden).sum() == 20  # 80% of 25
    again = hidden_label_rows(y, snr, 0.8, seed=0)
    assert np.array_equal(again[1], hidden)
    assert len(hidden_label_rows(np.array([0, 0, 1]), None, 0.9, seed=0)[0]) == 2  # one per class kept


# ------------------------------------------------------------------------------ pooled datasets


def test_frames_in_memory_are_pooled_side_by_side_with_placeholder_labels(tones) -> None:
    train, val = tones
    pooled = pool_training_frames(train, val)
    assert len(pooled) == len(train) + len(val)
    assert np.array_equal(pooled.x[len(train) :], val.x) and np.array_equal(pooled.y[: len(train)], train.y)
    assert not pooled.y[len(train) :].any()


def test_one_lazy_source_stays_one_source_and_two_read_each_from_its_own(tones, tmp_path) -> None:
    train, val = tones
    np.savez(tmp_path / "a.npz", x=train.x, y=train.y, class_names=np.asarray(train.class_names))
    np.savez(tmp_path / "pool.npz", x=val.x[:40])
    lazy = ArrayFileDataset(tmp_path / "a.npz")
    same = pool_training_frames(lazy.take(np.arange(10)), lazy.take(np.arange(100, 130)))
    assert type(same) is ArrayFileDataset and np.array_equal(same.rows[10:], np.arange(100, 130))
    other = pool_training_frames(lazy.take(np.arange(10)), PoolFileDataset(tmp_path / "pool.npz"))
    assert isinstance(other, PooledDataset)
    x = np.stack([s.numpy() for s, _ in other.__getitems__([0, 9, 10, 49])])
    assert np.allclose(x, np.concatenate([train.x[[0, 9]], val.x[[0, 39]]]))


def test_a_pool_of_another_frame_shape_is_refused_in_one_line(tones) -> None:
    short = tone_dataset(8, length=32)
    with pytest.raises(ShapeError, match="unlabelled frames are frames of"):
        pool_training_frames(tones[0], short)


# ------------------------------------------------------------------------------ training


def _distil(train, val, teacher, pool, log=None, **kd) -> torch.nn.Module:
    student = _net(1)
    distill(student, teacher, train, val, FAST, KDConfig(**kd), log=log, unlabelled=pool)
    return student


def test_the_pools_labels_are_never_read(tones, teacher) -> None:
    train, val = tones
    frames = tone_dataset(96, seed=5)
    wrong = ArrayDataset(frames.x, (frames.y + 1) % 4, frames.class_names)
    a = _distil(train, val, teacher, frames)
    b = _distil(train, val, teacher, wrong)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_the_pool_changes_training_and_the_teacher_cache_covers_its_frames(tones, teacher) -> None:
    train, val = tones
    lines: list[str] = []
    with_pool = _distil(train, val, teacher, tone_dataset(96, seed=5), log=lines.append, unlabelled_share=0.5)
    alone = _distil(train, val, teacher, None)
    assert any(f"x {len(train) + 96} frames" in line for line in lines), lines
    assert any(f"{len(train)} labelled + 96 unlabelled frames, 50% of each batch" in line for line in lines)
    assert any(not torch.equal(p, q) for p, q in zip(with_pool.parameters(), alone.parameters(), strict=True))


def test_a_pool_with_an_objective_of_labels_alone_is_refused(tones) -> None:
    with pytest.raises(ConfigError, match="reads labels alone"):
        _distil(*tones, None, tone_dataset(16, seed=5), loss="ce")


def test_the_unlabelled_share_is_checked() -> None:
    with pytest.raises(ConfigError, match="unlabelled_share"):
        KDConfig(unlabelled_share=1.0).validate()


# ------------------------------------------------------------------------------ recipes and API


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return build(tmp_path_factory.mktemp("unlabelled_files"))


def _distill_cli(recipe: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["distill", "--config", str(recipe), "--out", str(out), *extra])


def test_a_recipe_distils_on_an_npz_of_frames_alone_and_hidden_labels(files, tmp_path) -> None:
    x = np.load(files.npz)["x"]
    np.savez(tmp_path / "captures.npz", x=x[:24])
    recipe = files.recipe(
        tmp_path / "r.yaml",
        teacher="teacher:\n  model: edgekd:cnn1d_small\n  train: {epochs: 1, batch_size: 16}\n",
        extra="",
    )
    out = tmp_path / "out"
    result = _distill_cli(
        recipe,
        out,
        "--set",
        "data.hide_labels=0.5",
        "--set",
        "data.unlabelled.source=npz",
        "--set",
        f"data.unlabelled.path={tmp_path / 'captures.npz'}",
    )
    assert result.exit_code == 0, result.output
    # 32 train frames: 16 keep their labels (the teacher's set), 16 hidden + 24 captures unlabelled
    assert "on the 16 train frames data.hide_labels leaves labelled" in result.output
    assert "16 labelled + 40 unlabelled frames" in result.output
    assert (out / "student.pt").exists()


def test_a_missing_unlabelled_file_is_one_line(files, tmp_path) -> None:
    recipe = files.recipe(tmp_path / "r.yaml")
    out = tmp_path / "out"
    result = _distill_cli(
        recipe, out, "-q", "--set", "data.unlabelled.source=npz", "--set", "data.unlabelled.path=nowhere.npz"
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.unlabelled.path" in lines[0] and "does not exist" in lines[0]


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"hide_labels": 1.0}, "hide_labels"),
        (
            {"unlabelled": {"source": "npz", "path": "a.npz", "hide_labels": 0.5}},
            "unlabelled section of its own",
        ),
    ],
)
def test_bad_unlabelled_settings_are_refused(section, match) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(DataSpec, {"source": "npz", "path": "d.npz", **section}).validate()


def test_an_npz_without_frames_is_refused(tmp_path) -> None:
    np.savez(tmp_path / "p.npz", y=np.zeros(3))
    with pytest.raises(InputFileError, match="holds no array x"):
        open_unlabelled(from_dict(DataSpec, {"source": "npz", "path": str(tmp_path / "p.npz")}))


def test_hidden_labels_of_zero_keep_the_train_split_whole(tones) -> None:
    assert split_hidden_labels(tones[0], 0.0) == (tones[0], None)


def test_the_python_api_takes_a_dataset_of_frames_alone(tones, teacher) -> None:
    train, val = tones
    sets = {
        name: torch.utils.data.TensorDataset(torch.from_numpy(d.x), torch.from_numpy(d.y))
        for name, d in (("train", train), ("val", val))
    }

    class Frames(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 50

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(val.x[i])

    lines: list[str] = []
    result = edgekd.distill(
        teacher,
        _net(1),
        train=sets["train"],
        val=sets["val"],
        unlabelled=Frames(),
        epochs=1,
        log=lines.append,
    )
    assert result.val_accuracy > 0 and any("+ 50 unlabelled frames" in line for line in lines), lines
    with pytest.raises(ConfigError, match="unlabelled= may only be an npz file"):
        edgekd.distill(config="modrec", unlabelled=Frames())


def _streamed_run(folder: Path, teacher: torch.nn.Module, workers: int, log=None) -> dict:
    """A student distilled on the memory-mapped frames and pool of ``folder``."""
    val = tone_dataset(256, seed=1)
    lazy_train, pool = ArrayFileDataset(folder / "train.npz"), PoolFileDataset(folder / "pool.npz")
    student = _net(1)
    # One thread in both processes: the same float sums, so the same weights.
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", num_workers=workers, num_threads=1)
    distill(student, teacher, lazy_train, val, cfg, KDConfig(unlabelled_share=0.5), log=log, unlabelled=pool)
    return student.state_dict()


def streamed_side(folder: str) -> None:
    """Subprocess: the run with a DataLoader worker. The suite keeps workers out of its own
    process (EDGEKD_NUM_WORKERS=0): a worker's SIGCHLD handler there outlives the loader."""
    teacher = _net(0)
    teacher.load_state_dict(torch.load(Path(folder) / "teacher.pt", weights_only=True))
    torch.save(_streamed_run(Path(folder), teacher, 1), Path(folder) / "student-1.pt")


def test_streamed_frames_and_a_streamed_pool_train_alike_with_and_without_workers(
    tones, teacher, tmp_path
) -> None:
    train = tones[0]
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y, class_names=np.asarray(train.class_names))
    np.savez(tmp_path / "pool.npz", x=tone_dataset(80, seed=6).x)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    root = Path(__file__).resolve().parents[2]
    code = "import sys; from tests.distill.test_unlabelled import streamed_side; streamed_side(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "EDGEKD_NUM_WORKERS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines: list[str] = []
    here = _streamed_run(tmp_path, teacher, 0, log=lines.append)
    there = torch.load(tmp_path / "student-1.pt", weights_only=True)
    for p, q in zip(here.values(), there.values(), strict=True):
        assert torch.equal(p, q)
    assert any(f"{len(train)} labelled + 80 unlabelled frames" in line for line in lines), lines


def test_two_pools_of_the_same_size_get_teacher_caches_of_their_own(tones, teacher, tmp_path) -> None:
    train, val = tones
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y, class_names=np.asarray(train.class_names))
    lazy_train = ArrayFileDataset(tmp_path / "train.npz")
    computed = []
    for seed in (6, 7):
        np.savez(tmp_path / f"pool{seed}.npz", x=tone_dataset(40, seed=seed).x)
        lines: list[str] = []
        pool = PoolFileDataset(tmp_path / f"pool{seed}.npz")
        run = {"log": lines.append, "cache_dir": tmp_path / "c", "unlabelled": pool}
        distill(_net(1), teacher, lazy_train, val, FAST, KDConfig(), **run)
        computed.append(any("computing" in line for line in lines))
    assert computed == [True, True]


def test_the_synthetic_generator_gives_a_pool_from_another_seed() -> None:
    section = {"source": "synthetic_modulation", "synthetic": {"frames_per_class_snr": 2, "seed": 5}}
    pool = open_unlabelled(from_dict(DataSpec, section))
    labelled = from_dict(DataSpec, {"synthetic": {"frames_per_class_snr": 2}})
    first = open_unlabelled(labelled)
    assert len(pool) == 8 * 20 * 2 and pool.input_shape == (2, 128)
    assert not np.allclose(pool.x, first.x)


def test_a_pool_of_memory_maps_reads_in_the_training_process_under_auto_workers(
    tones, tmp_path, monkeypatch
) -> None:
    from edgekd.data.batches import WORKERS_ENV, resolve_workers

    monkeypatch.delenv(WORKERS_ENV, raising=False)  # the suite's own override
    train = tones[0]
    np.savez(tmp_path / "train.npz", x=train.x, y=train.y, class_names=np.asarray(train.class_names))
    np.savez(tmp_path / "pool.npz", x=tone_dataset(40, seed=6).x)
    pooled = PooledDataset(ArrayFileDataset(tmp_path / "train.npz"), PoolFileDataset(tmp_path / "pool.npz"))
    assert resolve_workers("auto", pooled) == 0
    pooled.augment = lambda x, seed: x  # per-sample CPU work: workers again
    assert resolve_workers("auto", pooled) > 0
