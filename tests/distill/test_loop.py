"""Training-loop features: schedules, EMA, early stopping, output files, AMP choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.distill.loop import amp_dtype
from edgekd.distill.state import WEIGHTS_FORMAT
from edgekd.distill.train import KDConfig, TrainConfig, distill, evaluate_model, lr_at, train_supervised
from edgekd.models import create_model


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn1d_small", 4, width=4)


def test_step_schedule_with_warmup() -> None:
    cfg = TrainConfig(lr=1.0, epochs=9, schedule="step", step_size=3, step_gamma=0.5)
    # 10 steps per epoch, 10 warm-up steps, then halved every 3 epochs counted after the warm-up.
    assert lr_at(4, 90, 10, cfg, 10) == pytest.approx(0.5)
    assert [lr_at(s, 90, 10, cfg, 10) for s in (10, 39, 40, 70)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_at(30, 90, 0, TrainConfig(lr=1.0, epochs=9, schedule="step"), 10) == pytest.approx(0.1)


def test_amp_is_cuda_only() -> None:
    cpu = torch.device("cpu")
    for amp in ("auto", "bf16", "fp16", "off"):
        assert amp_dtype(TrainConfig(amp=amp), cpu) is None
    assert amp_dtype(TrainConfig(amp="fp16"), torch.device("cuda")) is torch.float16
    assert amp_dtype(TrainConfig(amp="off"), torch.device("cuda")) is None


def test_output_folder_holds_metrics_and_checkpoints(tmp_path: Path, tones) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2, device="cpu", ema=0.9)
    result = train_supervised(_net(), *tones, cfg, out_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows == result.history
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_accuracy,lr,seconds,train_seconds"
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["format"] == WEIGHTS_FORMAT and best["epoch"] == result.best_epoch and last["epoch"] == 2
    fresh = _net(1)
    fresh.load_state_dict(best["state_dict"])
    assert evaluate_model(fresh, tones[1]) == pytest.approx(result.best_val_accuracy)
    assert result.steps == 2 * 8


def test_ema_weights_are_what_gets_evaluated(tones) -> None:
    plain, averaged = _net(), _net()
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-2, device="cpu")
    train_supervised(plain, *tones, cfg)
    result = train_supervised(averaged, *tones, TrainConfig(**{**cfg.__dict__, "ema": 0.5}))
    assert evaluate_model(averaged, tones[1]) == pytest.approx(result.best_val_accuracy)
    differs = any(
        not torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), averaged.state_dict().values(), strict=True)
    )
    assert differs


def test_early_stopping_after_patience(tones) -> None:
    teacher = _net(2)
    # lr so small that val accuracy cannot improve after the first epoch.
    cfg = TrainConfig(
        epochs=6, batch_size=64, lr=1e-9, device="cpu", early_stop_patience=2, schedule="constant"
    )
    result = distill(_net(), teacher, *tones, cfg, KDConfig())
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_inference_chunks_shrink_for_large_inputs_but_not_below_the_training_batch():
    from edgekd.distill.checks import inference_batch_size

    assert inference_batch_size(128, (2, 128)) == 512  # small IQ frames: big chunks
    assert inference_batch_size(16, (3, 384, 384)) == 16  # OCT-sized images: the training batch
    assert inference_batch_size(1, (3, 384, 384)) == 1
    assert inference_batch_size(1024, (2, 128)) == 1024
