"""IQ augmentation: seed-pure views, circular shift and phase rotation as specified."""

from __future__ import annotations

import numpy as np
import torch

from edgekd.distill.augment import EpochView, apply_view, augment_frames, view_of_epoch, view_params
from edgekd.distill.config import AugmentConfig

CFG = AugmentConfig(time_shift=10, phase_rotation=True, views=4, seed=3)


def test_views_are_a_pure_function_of_seed_index_and_view() -> None:
    index = np.arange(1000)
    shift, phase = view_params(CFG, index, 2)
    again = view_params(CFG, index[::-1].copy(), 2)  # another order, another process: same draws
    assert torch.equal(again[0].flip(0), shift) and torch.equal(again[1].flip(0), phase)
    subset = np.array([5, 999, 17])
    assert torch.equal(view_params(CFG, subset, 2)[0], shift[subset])
    other_view, other_seed = view_params(CFG, index, 3), view_params(AugmentConfig(10, True, 4, 4), index, 2)
    assert (other_view[0] != shift).float().mean() > 0.9 and (other_seed[1] != phase).float().mean() > 0.9
    # Shifts cover [-10, 10] evenly; phases [0, 2*pi).
    assert shift.min() == -10 and shift.max() == 10 and abs(float(shift.float().mean())) < 1.0
    assert float(phase.min()) >= 0 and float(phase.max()) < 2 * np.pi
    assert abs(float(phase.mean()) - np.pi) < 0.2


def test_shift_is_a_circular_delay_and_rotation_a_complex_phase() -> None:
    x = torch.randn(6, 2, 32, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0, 1, -1, 5, -7, 31 - 32])
    phase = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 6.0])
    out = apply_view(x, shift, phase, CFG)
    z = torch.complex(x[:, 0], x[:, 1])
    for row in range(6):
        expected = torch.roll(z[row], int(shift[row])) * torch.exp(1j * phase[row])
        torch.testing.assert_close(torch.complex(out[row, 0], out[row, 1]), expected, atol=1e-5, rtol=1e-5)
    shift_only = apply_view(x, shift, phase, AugmentConfig(time_shift=10))
    assert torch.equal(shift_only[3], torch.roll(x[3], 5, dims=-1))


def test_epoch_view_matches_the_view_of_single_frames() -> None:
    frames = torch.randn(50, 2, 40)
    epoch = EpochView(CFG, 50, view_of_epoch(6, CFG))  # epoch 6 -> view 1
    assert epoch.view == 1 and view_of_epoch(4, CFG) == 3 and view_of_epoch(5, CFG) == 0
    idx = torch.tensor([3, 41, 8])
    assert torch.equal(epoch.apply(frames[idx], idx), augment_frames(frames[idx], idx.numpy(), 1, CFG))
    off = AugmentConfig()
    assert off.view_count == 1 and view_of_epoch(7, off) == 0
    assert augment_frames(frames, np.arange(50), 0, off) is frames
