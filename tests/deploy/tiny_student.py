"""A tiny trained student (edgekd checkpoint of the built-in ``cnn1d_small``) and its data npz.

Trained for a few Adam steps on separable tones (``tests.export.tiny_nets.iq_frames``) so
accuracy is well above chance and INT8 has something to lose. Built in-process, no downloads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.data.dataset import ArrayDataset
from edgekd.models.checkpoint import save_checkpoint
from edgekd.models.factory import create_model
from tests.export.tiny_nets import CLASSES, FRAME, iq_frames

CLASS_NAMES = ["A", "B", "C", "D"]


@dataclasses.dataclass
class TinyDeploy:
    student: Path
    data: Path


def save_data(path: Path, n: int = 192, seed: int = 0) -> Path:
    """Frames with a 50/25/25 train/val/test split and SNR labels (for stratified calibration)."""
    x, y = iq_frames(n, seed=seed)
    split = np.repeat(np.array([0, 0, 1, 2], dtype=np.int8), n // 4)
    snr = np.tile(np.array([-4, 0, 4, 8], dtype=np.int16), n // 4)
    ArrayDataset(x=x, y=y, class_names=CLASS_NAMES, snr=snr, split=split).save_npz(path)
    return path


def train_student(path: Path, *, steps: int = 30, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("cnn1d_small", CLASSES, FRAME[0])
    frames, labels = iq_frames(256, seed=100 + seed)
    x, y = torch.from_numpy(frames), torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for step in range(steps):
            idx = slice((step * 32) % 256, (step * 32) % 256 + 32)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(previous)
    save_checkpoint(
        path,
        model.eval(),
        model_name="cnn1d_small",
        model_kwargs={},
        num_classes=CLASSES,
        in_channels=FRAME[0],
        input_shape=FRAME,
        class_names=CLASS_NAMES,
    )
    return path


def build_tiny_deploy(folder: Path) -> TinyDeploy:
    folder.mkdir(parents=True, exist_ok=True)
    return TinyDeploy(student=train_student(folder / "student.pt"), data=save_data(folder / "data.npz"))
