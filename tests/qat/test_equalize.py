"""Cross-layer equalization: the FP32 function is unchanged, the per-channel activation ranges
become balanced, pairs it cannot rescale exactly are left alone, and the fake-quant model it
prepares quantizes an outlier-channel student with less error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.models import create_model
from edgekd.qat import QatConfig, calibrate, prepare_qat
from edgekd.qat.equalize import equalize_cross_layer, find_pairs
from edgekd.qat.prepare import equalized_float, fold_batchnorm

GAIN = 32.0


@torch.no_grad()
def _with_outlier_channel(model: nn.Module, gain: float = GAIN) -> nn.Module:
    """Channel 0 of every conv-BN-ReLU block of cnn1d_small times ``gain``, the next layer's
    matching input weights divided by it: the same function, one channel ``gain`` x wider."""
    model = copy.deepcopy(model).eval()
    blocks = list(model.features)
    consumers = [nxt[0] for nxt in blocks[1:]] + [model.head[-1]]
    for block, consumer in zip(blocks, consumers, strict=True):
        block[1].weight[0] *= gain
        block[1].bias[0] *= gain
        consumer.weight[:, 0] /= gain
    return model


@pytest.fixture(scope="module")
def outlier_student():
    torch.manual_seed(0)
    model = create_model("cnn1d_small", 4, width=8)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine terms to fold
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        for _ in range(3):
            model(torch.randn(64, 2, 64))
    return _with_outlier_channel(model.eval())


def _frames(n: int = 256, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2, 64)).astype(np.float32)


@torch.no_grad()
def _relu_channel_spread(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Largest / median per-channel max of every ReLU output (what the per-tensor quantizers see)."""
    spreads: list[float] = []

    def hook(_module, _inputs, out):
        amax = out.abs().amax(dim=(0, 2))
        spreads.append(float(amax.max() / amax.median()))

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(spreads) == 3
    return spreads


@pytest.mark.parametrize("data_free", [False, True])
def test_function_unchanged_and_channel_ranges_balanced(outlier_student, data_free):
    x = torch.from_numpy(_frames())
    with torch.no_grad():
        reference = outlier_student(x)
    before = _relu_channel_spread(outlier_student, x)
    net, folded = fold_batchnorm(outlier_student)
    assert folded
    pairs = equalize_cross_layer(net, None if data_free else x.numpy())
    assert [(p.producer, p.consumer) for p in pairs] == [
        ("features.0.0", "features.1.0"),
        ("features.1.0", "features.2.0"),
        ("features.2.0", "head.2"),
    ]
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)
    after = _relu_channel_spread(net, x)
    assert min(before) > GAIN / 4, before  # the injected channel dominates every range
    assert max(after) < 4.0, after  # balanced: no channel more than a few times the median
    if not data_free:
        assert all(p.spread_after < 2.0 < GAIN / 4 < p.spread_before for p in pairs), pairs


def test_pairs_it_cannot_rescale_exactly_are_left_alone():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv1d(2, 4, 3, padding=1)
            self.b = nn.Conv1d(4, 4, 3, padding=1)
            self.dw = nn.Conv1d(4, 4, 3, padding=1, groups=4)
            self.c = nn.Conv1d(4, 4, 3, padding=1)
            self.d = nn.Conv1d(4, 4, 3, padding=1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = torch.relu(self.b(h)) + h  # a's output has two users: a residual branch
            h = torch.sigmoid(self.dw(h))  # sigmoid is not homogeneous; dw is not a dense consumer
            return self.d(torch.relu(self.c(h)))

    net = torch.fx.symbolic_trace(Branchy().eval())
    pairs = find_pairs(net)
    assert [(p.producer, p.consumer) for p in pairs] == [("c", "d")]
    x = torch.randn(8, 2, 16)
    with torch.no_grad():
        reference = net(x)
        assert len(equalize_cross_layer(net, x.numpy())) == 1
        np.testing.assert_allclose(net(x).numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def _fake_quant_error(student: nn.Module, equalize: bool, frames: np.ndarray) -> float:
    cfg = QatConfig(equalize=equalize, weight_bits=7)
    model = prepare_qat(student, cfg, frames)
    calibrate(model, frames)
    x = torch.from_numpy(frames)
    reference = student(x)
    return float((model.eval()(x) - reference).abs().mean() / reference.std())


def test_equalized_fake_quant_model_is_closer_to_fp32(outlier_student):
    frames = _frames(256, seed=2)
    plain = _fake_quant_error(outlier_student, False, frames)
    equalized = _fake_quant_error(outlier_student, True, frames)
    assert equalized < plain / 2, (plain, equalized)
    model = prepare_qat(outlier_student, QatConfig(), frames)
    assert len(model.equalized) == 3
    assert prepare_qat(outlier_student, QatConfig(equalize=False), frames).equalized == []


def test_equalized_float_is_the_network_prepare_quantizes(outlier_student):
    frames = _frames(64, seed=3)
    net = equalized_float(outlier_student, frames)
    x = torch.from_numpy(frames)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), outlier_student(x).numpy(), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
