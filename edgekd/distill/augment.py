"""Seed-pure augmentation of IQ frames: random circular time shift and carrier phase rotation.

A view is a pure function of (seed, frame index, view number): the shift and phase of frame
``i`` in view ``v`` come from a counter-based generator (SplitMix64 keyed by the three
numbers), so any process can redraw exactly the view another drew — the teacher-logit cache
computes the teacher on view ``v`` once, and the loop later shows the student that very view.
Epoch ``e`` (1-based) uses view ``(e - 1) % views``.

Both transforms keep the class of a modulated signal: a receiver sees frames at an arbitrary
start time and with an unknown carrier phase (a rotation of the I/Q plane).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from edgekd.distill.config import AugmentConfig
from edgekd.errors import ConfigError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT_STREAM, _PHASE_STREAM = 1, 2


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a bijective avalanche of 64-bit words (wraps mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _uniform(seed: int, index: np.ndarray, view: int, stream: int) -> np.ndarray:
    """float64 [B] in [0, 1): one draw per frame index of the generator keyed by (seed, index, view)."""
    with np.errstate(over="ignore"):
        key = np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
        z = _splitmix64(key + _GOLDEN * np.uint64(stream))
        z = _splitmix64(z + _GOLDEN * np.uint64(view + 1))
        z = _splitmix64(z ^ (index.astype(np.uint64) * _GOLDEN))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def view_of_epoch(epoch: int, cfg: AugmentConfig) -> int:
    """The view number the student sees in ``epoch`` (1-based); always 0 without augmentation."""
    return (epoch - 1) % cfg.view_count


def view_params(cfg: AugmentConfig, index: np.ndarray, view: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift int64 [B] samples, phase float32 [B] radians) of frames ``index`` in ``view``."""
    index = np.asarray(index, dtype=np.int64)
    shift = np.zeros(len(index), dtype=np.int64)
    phase = np.zeros(len(index), dtype=np.float32)
    if cfg.time_shift > 0:
        span = 2 * cfg.time_shift + 1
        draw = _uniform(cfg.seed, index, view, _SHIFT_STREAM)
        shift = np.minimum((draw * span).astype(np.int64), span - 1) - cfg.time_shift
    if cfg.phase_rotation:
        phase = (_uniform(cfg.seed, index, view, _PHASE_STREAM) * (2 * np.pi)).astype(np.float32)
    return torch.from_numpy(shift), torch.from_numpy(phase)


def apply_view(x: torch.Tensor, shift: torch.Tensor, phase: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Frames ``x`` [B, 2, L] circularly delayed by ``shift`` [B] and rotated by ``phase`` [B].

    Runs on ``x``'s device; the output is a new tensor (the dataset's arrays stay untouched).
    """
    if cfg.time_shift > 0:
        length = x.shape[-1]
        positions = torch.arange(length, device=x.device)
        # out[t] = x[t - shift]: a positive shift delays the frame (torch.roll per row).
        source = (positions[None, :] - shift.to(x.device)[:, None]) % length
        x = torch.gather(x, 2, source[:, None, :].expand(-1, x.shape[1], -1))
    if cfg.phase_rotation:
        cos = torch.cos(phase).to(device=x.device, dtype=x.dtype)[:, None]
        sin = torch.sin(phase).to(device=x.device, dtype=x.dtype)[:, None]
        i, q = x[:, 0], x[:, 1]
        # (I + jQ) * e^{j phase}
        x = torch.stack([i * cos - q * sin, i * sin + q * cos], dim=1)
    return x


def augment_frames(x: torch.Tensor, index: np.ndarray, view: int, cfg: AugmentConfig) -> torch.Tensor:
    """View ``view`` of frames ``x`` [B, 2, L] whose dataset rows are ``index`` [B] (the IQ
    parts of ``cfg``; image views are drawn by the dataset, ``edgekd.data.image_augment``)."""
    if not cfg.iq_enabled:
        return x
    shift, phase = view_params(cfg, index, view)
    return apply_view(x, shift, phase, cfg)


def check_augmentable(input_shape: tuple[int, ...], cfg: AugmentConfig) -> None:
    """Raise ConfigError unless frames of ``input_shape`` (no batch axis, as the network takes
    them) take this augmentation."""
    if cfg.image_enabled and len(input_shape) != 3:
        raise ConfigError(
            f"train.augment.image applies to images [C, H, W], but the data's frames are {list(input_shape)}",
            hint="remove train.augment.image for this data",
        )
    if not cfg.iq_enabled:
        return
    if len(input_shape) != 2 or (cfg.phase_rotation and input_shape[0] != 2):
        raise ConfigError(
            f"train.augment applies to IQ frames [2, L], but the data's frames are {list(input_shape)}",
            hint="turn train.augment off (time_shift: 0, phase_rotation: false) for this data",
        )
    if cfg.time_shift >= input_shape[1]:
        raise ConfigError(
            f"train.augment.time_shift {cfg.time_shift} is not shorter than the frames ({input_shape[1]})",
            hint=f"use a shift below {input_shape[1]}",
        )


class EpochView:
    """The shift and phase of every training frame in one view, drawn once per epoch.

    Drawing the whole table at the start of an epoch keeps the per-step cost to two index
    operations and the transform itself.
    """

    def __init__(self, cfg: AugmentConfig, frames: int, view: int) -> None:
        self.cfg, self.view = cfg, view
        self.shift, self.phase = view_params(cfg, np.arange(frames), view)

    def apply(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """View of the batch ``x`` [B, 2, L] whose dataset rows are ``idx`` [B] (a CPU tensor)."""
        return apply_view(x, self.shift[idx], self.phase[idx], self.cfg)


_PARTNER_STREAM, _WEIGHT_STREAM = 3, 4


def mixup_params(
    cfg: AugmentConfig, index: np.ndarray, view: int, frames: int, mixup: float
) -> tuple[np.ndarray, np.ndarray]:
    """(partner row int64 [B], partner weight float32 [B]) of frames ``index`` in ``view``.

    The partner is uniform over the ``frames`` rows and its weight uniform in [0, ``mixup``],
    both drawn from the (``cfg.seed``, index, view) streams, so they depend on nothing else
    (not on the batch or its order). ``mixup`` <= 0.5 keeps frame ``index`` the larger part.
    """
    index = np.asarray(index, dtype=np.int64)
    partner = np.minimum(
        (_uniform(cfg.seed, index, view, _PARTNER_STREAM) * frames).astype(np.int64), frames - 1
    )
    weight = (_uniform(cfg.seed, index, view, _WEIGHT_STREAM) * mixup).astype(np.float32)
    return partner, weight


def materialize_views(x: np.ndarray, cfg: AugmentConfig, mixup: float = 0.0) -> np.ndarray:
    """Every view of every frame as one array: row ``v * N + i`` is view ``v`` of frame ``i``.

    With ``mixup`` > 0 each view first mixes frame ``i`` with a partner frame of ``x``,
    ``(1 - w) * x[i] + w * x[partner]`` (``mixup_params``), then applies the view's shift and
    phase (``augment_frames``) to the mixture. The training loop sees one batch at a time and
    cannot fetch partner frames, so mixup is used this way: train on the materialized frames
    with ``train.augment`` off. A mixed frame has no single label; distil it with pure KD
    (``alpha: 1``), whose teacher logits (cached per row) are of the very mixture the student
    sees. ``cfg.views`` views, or the frames themselves (one view) when ``cfg`` is off and
    ``mixup`` is 0.
    """
    if not 0.0 <= mixup <= 0.5:
        raise ConfigError(
            f"mixup must be in [0, 0.5], got {mixup}", hint="0.3 mixes in up to 30% of a partner"
        )
    views = cfg.views if (cfg.iq_enabled or mixup > 0) else 1
    frames = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    index = np.arange(len(x))
    out = []
    for view in range(views):
        xv = frames
        if mixup > 0:
            partner, weight = mixup_params(cfg, index, view, len(x), mixup)
            w = torch.from_numpy(weight).reshape(-1, *([1] * (frames.ndim - 1)))
            xv = (1 - w) * frames + w * frames[torch.from_numpy(partner)]
        out.append(augment_frames(xv, index, view, cfg).numpy())
    return np.concatenate(out)


def with_image_views(train: Any, cfg: AugmentConfig) -> Any:
    """``train`` drawing ``cfg.image``'s views: key ``(i, v)`` gives view ``v`` of sample ``i``,
    a pure function of (``cfg.seed``, v, i) computed in whichever worker reads it. ``train``
    itself when image views are off.

    The views are drawn from uint8 pixels: a lazily read image dataset (``data.storage`` auto
    or lazy), not float32 frames held in memory (ConfigError naming the data).
    """
    if not cfg.image_enabled:
        return train
    if getattr(train, "sample_dtype", None) is not np.uint8:
        data = getattr(train, "source", None) or "the data"
        raise ConfigError(
            f"train.augment.image draws its views from uint8 pixels, but {data} holds float32 frames "
            "in memory",
            hint="read the image folder lazily (data.storage: auto or lazy), or remove train.augment.image",
        )
    views = copy.copy(train)
    views.augment, views.augment_seed = cfg.image, cfg.seed
    return views
