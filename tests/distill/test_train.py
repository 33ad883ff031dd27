"""Training loops on a tiny separable dataset: learning, distillation, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.distill.train import (
    KDConfig,
    TrainConfig,
    distill,
    evaluate_model,
    lr_at,
    train_supervised,
)
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

FAST = TrainConfig(epochs=2, batch_size=64, lr=1e-2, device="cpu")


def _model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=4, **kwargs)


@pytest.fixture(scope="module")
def teacher(tones: tuple[ArrayDataset, ArrayDataset]) -> nn.Module:
    model = _model("resnet1d", width=8, blocks=[1, 1, 1])
    train_supervised(model, *tones, TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu"))
    return model


def test_supervised_training_learns(tones, teacher: nn.Module) -> None:
    assert evaluate_model(teacher, tones[1]) > 0.8


def test_distillation_beats_chance_and_is_reproducible(tones, teacher: nn.Module) -> None:
    lines: list[str] = []
    runs = []
    for _ in range(2):
        student = _model("cnn1d_small", seed=3, width=8)
        result = distill(student, teacher, *tones, FAST, KDConfig(), log=lines.append)
        runs.append((result, student))
    (first, student_a), (second, student_b) = runs
    assert first.best_val_accuracy > 0.5  # chance is 0.25
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    for a, b in zip(student_a.state_dict().values(), student_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sum("epoch 2/2" in line for line in lines) == 2


def test_history_and_best_weights_are_restored(tones, teacher: nn.Module) -> None:
    student = _model("mobilenet1d", width_mult=0.5)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu", warmup_epochs=1, grad_clip=1.0)
    result = distill(student, teacher, *tones, cfg, KDConfig(temperature=2.0, alpha=0.5))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "train_loss", "val_accuracy", "lr", "seconds", "train_seconds"}
    best = max(result.history, key=lambda h: h["val_accuracy"])
    assert result.best_epoch == best["epoch"] and result.best_val_accuracy == best["val_accuracy"]
    assert evaluate_model(student, tones[1]) == pytest.approx(result.best_val_accuracy)
    assert not student.training


def test_teacher_cache_matches_per_batch_teacher(tones, teacher: nn.Module) -> None:
    results = []
    for cache in (True, False):
        student = _model("cnn1d_small", seed=5, width=4)
        cfg = TrainConfig(epochs=1, batch_size=128, device="cpu", optimizer="sgd", schedule="constant")
        results.append(distill(student, teacher, *tones, cfg, KDConfig(cache_teacher=cache)))
    assert results[0].history[0]["train_loss"] == pytest.approx(results[1].history[0]["train_loss"], rel=1e-4)


def test_teacher_stays_frozen(tones, teacher: nn.Module) -> None:
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distill(_model("cnn1d_small", width=4), teacher, *tones, TrainConfig(epochs=1, device="cpu"), KDConfig())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_wrong_channel_count_names_both_shapes(tones) -> None:
    wrong = ArrayDataset(np.zeros((8, 3, 64), np.float32), np.arange(8) % 4, tones[0].class_names)
    with pytest.raises(ShapeError) as info:
        train_supervised(_model("cnn1d_small"), wrong, wrong, FAST)
    line = info.value.one_line()
    assert "3x64" in line and "2 input channels" in line


def test_wrong_class_count_and_teacher_mismatch(tones) -> None:
    with pytest.raises(ShapeError, match="4 classes"):
        train_supervised(create_model("cnn1d_small", 6), *tones, FAST)
    with pytest.raises(ShapeError, match="teacher"):
        distill(_model("cnn1d_small"), create_model("cnn1d_small", 6), *tones, FAST, KDConfig())


def test_wrong_frame_length_is_a_shape_error() -> None:
    fixed_length = nn.Sequential(nn.Flatten(1), nn.Linear(2 * 64, 4))  # takes 2x64 frames only
    short = tone_dataset(8, length=32)
    with pytest.raises(ShapeError) as info:
        train_supervised(fixed_length, short, short, FAST)
    assert "cannot take dataset frames of shape 2x32" in info.value.one_line()


def test_non_finite_data_and_empty_val_are_refused(tones) -> None:
    bad = tones[0].take(np.arange(16))
    bad.x[0, 0, 0] = np.nan
    with pytest.raises(InputFileError, match="NaN"):
        train_supervised(_model("cnn1d_small"), bad, tones[1], FAST)
    with pytest.raises(InputFileError, match="val frame"):
        train_supervised(_model("cnn1d_small"), tones[0], tones[1].take(np.arange(0)), FAST)


def test_evaluate_model_counts_top1() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 1.0, 0.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(x), 4)

    data = ArrayDataset(
        np.zeros((10, 2, 16), np.float32), np.array([1, 1, 1, 0, 0, 2, 2, 3, 3, 3]), list("abcd")
    )
    assert evaluate_model(Constant(), data, batch_size=3) == pytest.approx(0.3)


def test_config_from_yaml_mapping_is_strict() -> None:
    cfg = from_dict(TrainConfig, {"epochs": 3, "optimizer": "sgd", "grad_clip": 1})
    assert cfg.epochs == 3 and cfg.grad_clip == 1.0
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"epoch": 3})
    assert "did you mean 'epochs'" in info.value.one_line()
    for bad in ({"epochs": 0}, {"optimizer": "adam"}, {"warmup_epochs": 8}, {"device": "tpu:x"}, {"lr": 0}):
        with pytest.raises(ConfigError):
            from_dict(TrainConfig, bad)


def test_kd_config_validation() -> None:
    assert from_dict(KDConfig, {}) == KDConfig(loss="kd", temperature=4.0, alpha=0.7)
    with pytest.raises(ConfigError) as info:
        from_dict(KDConfig, {"loss": "kl"})
    assert "unknown loss 'kl'" in info.value.one_line() and "did you mean 'rkl'" in info.value.one_line()
    assert "at, ce, dist, dkd, fitnet, js, kd, nkd, ofa, rkd, rkl" in info.value.one_line()
    for bad in ({"alpha": 1.5}, {"temperature": 0}):
        with pytest.raises(ConfigError):
            from_dict(KDConfig, bad)


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1.0)
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, cfg) == pytest.approx(0.5)
    assert lr_at(99, 100, 10, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_at(50, 100, 0, TrainConfig(lr=0.3, schedule="constant")) == 0.3


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_line(tones) -> None:
    with pytest.raises(RuntimeUnavailable, match="CUDA is not available"):
        train_supervised(_model("cnn1d_small"), *tones, TrainConfig(device="cuda"))
