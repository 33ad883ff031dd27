"""Parameter and MAC counts against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.errors import ShapeError
from edgekd.models import count_macs, count_params, create_model


def _tiny() -> nn.Module:
    # [1, 2, 16] -> conv(2->4, k3, pad 1)        out [1, 4, 16]
    #            -> depthwise conv(4, k5, s2, p2) out [1, 4, 8]
    #            -> BN, ReLU, mean                out [1, 4]
    #            -> linear(4 -> 3)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.Conv1d(4, 4, 5, stride=2, padding=2, groups=4, bias=False),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(1),
        nn.Linear(4, 3),
    )


def test_macs_of_a_tiny_network_match_hand_count() -> None:
    conv = 4 * 16 * (2 * 3)  # outputs x (in/groups x taps) = 384
    depthwise = 4 * 8 * (1 * 5)  # = 160
    linear = 3 * 4  # = 12
    assert count_macs(_tiny(), (2, 16)) == conv + depthwise + linear == 556


def test_params_of_a_tiny_network_match_hand_count() -> None:
    conv = 4 * 2 * 3 + 4
    depthwise = 4 * 1 * 5
    bn = 4 + 4  # weight and bias; running stats are buffers
    linear = 4 * 3 + 3
    assert count_params(_tiny()) == conv + depthwise + bn + linear == 71


def test_conv2d_is_counted_too() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(1))
    assert count_macs(model, (3, 5, 5)) == 8 * 5 * 5 * 3 * 9


def test_counting_restores_train_mode_and_leaves_bn_statistics_alone() -> None:
    model = create_model("resnet1d", 4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    macs = count_macs(model, (2, 128))
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert macs == count_macs(model.eval(), (2, 128)) > 1_000_000


def test_trainable_only() -> None:
    model = _tiny()
    model[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 71 - 28


def test_wrong_input_shape_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match=r"\(3, 128\)"):
        count_macs(create_model("cnn1d_small", 4), (3, 128))
