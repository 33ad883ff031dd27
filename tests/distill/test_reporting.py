"""Progress bar on a terminal, silence elsewhere, per-epoch metrics files and TensorBoard."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from edgekd.distill.train import TrainConfig, train_supervised
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

CFG = TrainConfig(epochs=2, batch_size=32, device="cpu")


def _train(tmp_path, progress: bool):
    torch.manual_seed(0)
    model = create_model("cnn1d_small", 4, width=4)
    return train_supervised(
        model, tone_dataset(96, seed=0), tone_dataset(32, seed=1), CFG, out_dir=tmp_path, progress=progress
    )


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_only_when_asked_and_on_a_terminal(tmp_path, capfd, monkeypatch, progress) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the captured stderr as a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    _train(tmp_path, progress)
    err = capfd.readouterr().err
    assert ("epoch 2/2" in err) == progress, err[-500:]


def test_metrics_files_hold_one_row_per_epoch_with_train_time(tmp_path) -> None:
    result = _train(tmp_path, False)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in lines] == [1, 2]
    for row in lines:
        assert 0 < row["train_seconds"] <= row["seconds"]
        assert {"train_loss", "val_accuracy", "lr"} <= row.keys()
    assert result.history == lines


def test_tensorboard_scalars(tmp_path) -> None:
    # tensorboard is in the test extra (edgekd[tensorboard]): a failed import is a failure here.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train(tmp_path, False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert "train/val_accuracy" in events.Tags()["scalars"]


def test_without_tensorboard_the_run_writes_no_event_files(tmp_path, monkeypatch) -> None:
    # The package is optional for users: simulate its absence (None in sys.modules fails the import).
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = _train(tmp_path, False)
    assert not (tmp_path / "tensorboard").exists()
    assert len(result.history) == 2 and (tmp_path / "metrics.csv").is_file()
