"""Tiny 1-D conv nets over IQ frames ``[N, 2, 128]`` and separable synthetic data.

Built here on purpose (not from ``edgekd.models``) so export/quantize tests stand alone.
Training is cached per process: the quantize tests reuse the export tests' net.
"""

from __future__ import annotations

import contextlib
import copy
import functools

import numpy as np
import torch
from torch import nn

CLASSES = 4
FRAME = (2, 128)


def conv_net(classes: int = CLASSES) -> nn.Module:
    """Conv1d/BatchNorm1d/ReLU/MaxPool stem, global average pool, Linear head."""
    return nn.Sequential(
        nn.Conv1d(2, 16, 7, padding=3),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


def separable_net(classes: int = CLASSES) -> nn.Module:
    """Depthwise-separable variant (1-D MobileNet-like block)."""
    return nn.Sequential(
        nn.Conv1d(2, 16, 7, padding=3),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 16, 5, padding=2, groups=16),  # depthwise
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Conv1d(16, 32, 1),  # pointwise
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


NETS = {"conv": conv_net, "separable": separable_net}


def iq_frames(n: int, seed: int, noise: float = 1.0, classes: int = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Complex tones whose frequency encodes the class, plus Gaussian noise.

    Returns float32 frames ``[n, 2, 128]`` (I and Q rows) and int64 labels ``[n]``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    t = np.arange(FRAME[1])
    freq = 0.03 + 0.05 * labels[:, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    tone = np.stack([np.cos(2 * np.pi * freq * t + phase), np.sin(2 * np.pi * freq * t + phase)], axis=1)
    frames = tone + rng.normal(0.0, noise, (n, *FRAME))
    return frames.astype(np.float32), labels


@contextlib.contextmanager
def _one_thread():
    # 2 shared cores: one thread trains these nets faster and steadier than two.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.cache
def _trained(kind: str, steps: int) -> nn.Module:
    torch.manual_seed(0)
    model = NETS[kind]()
    frames, labels = iq_frames(512, seed=0)
    x, y = torch.from_numpy(frames), torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    model.train()
    with _one_thread():
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(frames), 32))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def trained_net(kind: str = "conv", steps: int = 40) -> nn.Module:
    """A few Adam steps on ``iq_frames``: logits meaningful, accuracy well above chance."""
    return copy.deepcopy(_trained(kind, steps))


def accuracy(model: nn.Module, frames: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(frames)).argmax(1).numpy() == labels).mean())
