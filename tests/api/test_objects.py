"""The Python API on the caller's own objects: datasets wrapped, modules trained and exported,
bad input refused in one line with nothing left behind."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import edgekd
from edgekd.data.torch_dataset import TorchDataset, as_torch_datasets
from edgekd.errors import ConfigError, EdgeKDError, InputFileError, ShapeError


class Counting(Dataset):
    """Two classes of frames [2, 32] whose sign of the mean is the label; counts reads."""

    def __init__(self, n: int, seed: int = 0, targets: bool = True, snr: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.x = torch.randn(n, 2, 32, generator=g) * 0.5 + (self.labels[:, None, None] * 2 - 1)
        if targets:
            self.targets = self.labels.tolist()
        self.snr, self.reads = snr, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        self.reads += 1
        sample = (self.x[i], int(self.labels[i]))
        return (*sample, {"snr": 10 - i % 3}) if self.snr else sample


def _mlp(classes: int = 2) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, classes))


def test_labels_come_from_the_targets_attribute_without_reading_samples() -> None:
    ds = Counting(50)
    wrapped = TorchDataset(ds, name="train")
    assert ds.reads == 1  # the first sample, for its shape
    assert wrapped.input_shape == (2, 32) and wrapped.num_classes == 2
    assert np.array_equal(wrapped.y, ds.labels.numpy())
    x, y = wrapped[7]
    assert torch.equal(x, ds.x[7]) and y == int(ds.labels[7])


def test_labels_and_snr_are_read_once_without_a_targets_attribute() -> None:
    ds = Counting(30, targets=False, snr=True)
    wrapped = TorchDataset(ds, name="train")
    assert np.array_equal(wrapped.y, ds.labels.numpy())
    assert wrapped.snr is not None and list(wrapped.snr[:3]) == [10, 9, 8]


def test_one_class_list_for_train_and_val() -> None:
    ds = TensorDataset(torch.randn(10, 3), torch.tensor([0, 1] * 5))
    val = TensorDataset(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]))
    wrapped = as_torch_datasets({"train": ds, "val": val})
    assert wrapped["train"].class_names == wrapped["val"].class_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("sample", "error", "words"),
    [
        (("not a tensor", 0), InputFileError, "not a tensor or array"),
        ((torch.zeros(2), 0.5), InputFileError, "not a class id"),
        (torch.zeros(2), InputFileError, "not (x, y)"),
        ((torch.zeros(2), 1, "snr"), InputFileError, "not a dict of extras"),
    ],
)
def test_malformed_samples_are_one_line(sample, error, words) -> None:
    class One(Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            return sample

    with pytest.raises(error, match=re.escape(words)) as info:
        TorchDataset(One(), name="train")
    assert "\n" not in str(info.value)


def test_a_sample_of_another_shape_is_refused_when_read() -> None:
    class Ragged(Dataset):
        targets = (0, 1, 0)

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            return torch.zeros(2, 8 + 8 * (i == 2)), self.targets[i]

    wrapped = TorchDataset(Ragged(), name="train")
    with pytest.raises(ShapeError, match=r"train\[2\] has shape \[2, 16\]"):
        wrapped[2]


def test_iterable_datasets_are_refused() -> None:
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), 0

    with pytest.raises(ConfigError, match="IterableDataset"):
        edgekd.distill(_mlp(), _mlp(), train=Stream(), val=Stream())


def test_distill_trains_the_callers_module_and_saves_its_state_dict(tmp_path: Path) -> None:
    train, val = Counting(256, seed=0), Counting(64, seed=1)
    teacher = _mlp()
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(60):  # a teacher that knows the task
        loss = nn.functional.cross_entropy(teacher(train.x), train.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    before = student[1].weight.detach().clone()
    run = edgekd.distill(
        teacher, student, train=DataLoader(train, batch_size=32), val=val, epochs=3, out=tmp_path / "kd"
    )
    assert run.student is student and not torch.equal(before, student[1].weight)
    assert run.teacher_val_accuracy > 0.9 and run.val_accuracy > 0.8
    assert len(run.history) == 3
    state = torch.load(run.checkpoint, weights_only=True)
    assert torch.equal(state["1.weight"], student[1].weight.detach())

    onnx = edgekd.export(student, example=train[0][0], out=tmp_path / "kd", openvino=False)
    assert onnx.onnx_path.is_file() and onnx.parity["onnx"]


def test_a_teacher_of_other_classes_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    out = tmp_path / "kd"
    with pytest.raises(EdgeKDError, match="teacher") as info:
        edgekd.distill(
            _mlp(classes=5), _mlp(), train=Counting(40), val=Counting(8, seed=1), epochs=1, out=out
        )
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_quantize_and_bench_take_the_callers_dataset(tmp_path: Path) -> None:
    train, val = Counting(200, seed=0), Counting(64, seed=1)
    run = edgekd.distill(_mlp(), "edgekd:cnn1d_small", train=train, val=val, epochs=2, out=tmp_path)
    assert run.checkpoint.is_file()  # a registry name: an edgekd checkpoint that export can open
    onnx = edgekd.export(run.checkpoint, data=val, openvino=False)
    int8 = edgekd.quantize(onnx.onnx_path, calibration=train, val=val, min_top1_agreement=0.5)
    assert int8.path.name == "student.int8.onnx" and set(int8.accuracy) >= {"fp32", "int8"}
    report = edgekd.bench([onnx.onnx_path, int8.path], data=val, min_runs=20, min_seconds=0.05)
    assert report.path is None  # no out=: the files went to a temporary folder
    entries = report.entries
    assert entries["onnxruntime/int8"]["status"] == "ok", entries
    assert report.document["reference"] == "onnxruntime/fp32"
    assert entries["onnxruntime/fp32"]["params"] > 0  # counted on the ONNX graph


def test_a_dataloaders_batch_size_and_workers_become_training_settings() -> None:
    from edgekd.api import inputs
    from edgekd.api.distill_objects import _configs

    loader = DataLoader(Counting(40), batch_size=8, num_workers=2)
    splits = inputs.training_splits(loader, Counting(8, seed=1))
    explicit = dict.fromkeys(("loss", "temperature", "alpha", "epochs", "batch_size", "lr", "device", "seed"))
    train_cfg, _kd = _configs(explicit, splits, {}, {})
    assert (train_cfg.batch_size, train_cfg.num_workers) == (8, 2)
    train_cfg, _kd = _configs({**explicit, "batch_size": 16}, splits, {}, {})
    assert train_cfg.batch_size == 16  # the argument wins over the loader
