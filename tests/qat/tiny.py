"""A tiny labelled IQ-like dataset with splits and SNR labels, and a trained tiny teacher/student.

Everything is built in memory in a second or two (no files, no downloads); the fixtures in
``conftest.py`` cache it per test session.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.data.dataset import ArrayDataset
from edgekd.distill.config import TrainConfig
from edgekd.distill.train import train_supervised
from edgekd.models import create_model
from tests.distill.synthetic import CLASSES, tone_dataset

SNRS = (-10, 0, 10)


def split_tone_dataset(n: int = 480, seed: int = 0) -> ArrayDataset:
    """``n`` 2x64 tone frames (4 classes), split 60/20/20 train/val/test, SNR labels -10/0/10 dB.

    Higher SNR label = less noise, so per-SNR accuracies mean something.
    """
    rng = np.random.default_rng(seed)
    parts = [tone_dataset(n // 3, seed=seed + i, noise=noise) for i, noise in enumerate((1.2, 0.6, 0.3))]
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    snr = np.repeat(np.array(SNRS, dtype=np.int16), [len(p) for p in parts])
    split = rng.permutation(np.arange(len(x)) % 5)  # 0,1,2 train; 3 val; 4 test
    split = np.select([split < 3, split == 3], [0, 1], 2).astype(np.int8)
    return ArrayDataset(x, y, list(CLASSES), snr=snr, split=split)


def trained(name: str, data: ArrayDataset, epochs: int = 4, **kwargs) -> torch.nn.Module:
    """A zoo model trained a few epochs with cross-entropy on ``data``'s train split (CPU, seeded)."""
    torch.manual_seed(0)
    model = create_model(name, data.num_classes, **kwargs)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=5e-3, weight_decay=0.0, device="cpu")
    train_supervised(model, data.subset("train"), data.subset("val"), cfg)
    return model
