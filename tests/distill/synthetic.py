"""A tiny, separable IQ-like dataset built in memory (no files, no downloads)."""

from __future__ import annotations

import numpy as np

from edgekd.data.dataset import ArrayDataset

CLASSES = ["tone0", "tone1", "tone2", "tone3"]


def tone_dataset(n: int, length: int = 64, seed: int = 0, noise: float = 0.5) -> ArrayDataset:
    """Class k is a complex tone at (k + 1) / 16 cycles per sample, random phase, plus noise.

    x float32 [n, 2, length] (I and Q), y int64 [n] in 0..3.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    angle = 2 * np.pi * (y[:, None] + 1) / 16 * t + phase
    x = np.stack([np.cos(angle), np.sin(angle)], axis=1) + rng.normal(0, noise, (n, 2, length))
    return ArrayDataset(x.astype(np.float32), y, CLASSES)
