"""Mixup views (``materialize_views``): seed-pure, batch-independent, and keyed into the teacher cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.augment import augment_frames, materialize_views, mixup_params
from edgekd.distill.config import AugmentConfig
from edgekd.distill.teacher_cache import cache_key, data_digest
from edgekd.errors import ConfigError

CFG = AugmentConfig(time_shift=10, phase_rotation=True, views=3, seed=3)


def _frames(n: int = 40) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 2, 32)).astype(np.float32)


def test_partner_and_weight_are_a_pure_function_of_seed_index_and_view() -> None:
    index = np.arange(1000)
    partner, weight = mixup_params(CFG, index, 1, 1000, 0.3)
    subset = np.array([999, 5, 17])  # any order, any batch: the same draws per frame
    sub_partner, sub_weight = mixup_params(CFG, subset, 1, 1000, 0.3)
    assert np.array_equal(sub_partner, partner[subset]) and np.array_equal(sub_weight, weight[subset])
    assert partner.min() >= 0 and partner.max() < 1000 and len(np.unique(partner)) > 500
    assert weight.min() >= 0 and weight.max() <= 0.3 and abs(float(weight.mean()) - 0.15) < 0.02
    other_view = mixup_params(CFG, index, 2, 1000, 0.3)[0]
    assert (other_view != partner).mean() > 0.9


def test_materialized_view_is_the_mixture_then_the_shift_and_phase() -> None:
    x = _frames()
    views = materialize_views(x, CFG, mixup=0.3)
    assert views.shape == (3 * 40, 2, 32)
    assert np.array_equal(views, materialize_views(x, CFG, mixup=0.3))  # reproducible
    index = np.arange(40)
    partner, weight = mixup_params(CFG, index, 2, 40, 0.3)
    w = torch.from_numpy(weight)[:, None, None]
    mixed = (1 - w) * torch.from_numpy(x) + w * torch.from_numpy(x[partner])
    expected = augment_frames(mixed, index, 2, CFG).numpy()
    assert np.allclose(views[80:120], expected, atol=1e-6)


def test_without_mixup_the_rows_are_the_loops_views() -> None:
    x = _frames()
    views = materialize_views(x, CFG)
    for view in range(3):
        loop_view = augment_frames(torch.from_numpy(x), np.arange(40), view, CFG).numpy()
        assert np.array_equal(views[view * 40 : (view + 1) * 40], loop_view)
    assert np.array_equal(materialize_views(x, AugmentConfig()), x)  # off: the frames themselves


def test_teacher_cache_key_changes_with_mixup() -> None:
    x, off = _frames(), AugmentConfig()
    keys = {
        cache_key("teacher", data_digest(materialize_views(x, CFG, mixup=m)), off, "fp16", 5)
        for m in (0.0, 0.2, 0.3)
    }
    assert len(keys) == 3


def test_mixup_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mixup"):
        materialize_views(_frames(), CFG, mixup=0.6)
