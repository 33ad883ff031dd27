"""The fake quantizers reproduce a hand-computed quantize/dequantize exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.qat.fake_quant import ActivationQuantizer, WeightQuantizer, activation_qparams, quantize_bias


def _calibrated(kind: str, lo: float, hi: float, learn: bool = False) -> ActivationQuantizer:
    quantizer = ActivationQuantizer(kind, learn=learn)
    quantizer.calibrating = True
    quantizer(torch.tensor([lo, hi]))
    quantizer.finish_calibration()
    return quantizer.eval()


def test_uint8_activation_matches_hand_computation():
    # Range [-1, 2]: scale 3/255, zero point round(1 / (3/255)) = 85.
    quantizer = _calibrated("uint8", -1.0, 2.0)
    x = torch.tensor([-1.3, -1.0, -0.25, 0.0, 0.3, 0.7401, 2.0, 2.5])
    scale, zp = 3.0 / 255.0, 85
    q = np.clip(np.rint(x.numpy().astype(np.float64) / scale) + zp, 0, 255)
    expected = (q - zp) * scale
    np.testing.assert_allclose(quantizer(x).numpy(), expected, rtol=0, atol=1e-6)
    assert float(quantizer.zero_point) == zp
    assert float(quantizer.scale()) == pytest.approx(scale)
    # Zero is exactly representable; the values outside the range saturate.
    assert quantizer(torch.tensor([0.0])).item() == 0.0
    assert quantizer(torch.tensor([5.0])).item() == pytest.approx((255 - zp) * scale)


def test_int8_activation_is_symmetric():
    quantizer = _calibrated("int8", -0.5, 2.54)
    x = torch.tensor([-3.0, -0.5, 0.011, 1.0, 2.54])
    scale = 2.54 / 127.0
    expected = np.clip(np.rint(x.numpy().astype(np.float64) / scale), -128, 127) * scale
    np.testing.assert_allclose(quantizer(x).numpy(), expected, rtol=0, atol=1e-6)
    assert float(quantizer.zero_point) == 0.0


def test_qparams_widen_the_range_to_include_zero():
    assert activation_qparams(0.5, 2.0, "uint8") == pytest.approx((2.0 / 255.0, 0))
    scale, zp = activation_qparams(-2.0, -0.5, "uint8")
    assert zp == 255 and scale == pytest.approx(2.0 / 255.0)


@pytest.mark.parametrize("bits", [8, 7])
def test_weight_per_channel_symmetric(bits):
    w = torch.tensor([[[0.5, -0.26, 0.1]], [[-2.0, 0.013, 1.999]]])  # [C_out=2, C_in=1, k=3]
    qmax = 2 ** (bits - 1) - 1
    scales = np.array([0.5, 2.0]) / qmax
    expected = np.rint(w.numpy().astype(np.float64) / scales[:, None, None]) * scales[:, None, None]
    out = WeightQuantizer(bits)(w)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-7)
    levels = out.numpy() / scales[:, None, None]
    assert np.abs(levels).max() <= qmax + 1e-4
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-4)


def test_bias_on_int32_grid_with_straight_through_gradient():
    bias = torch.tensor([0.1234, -0.5], requires_grad=True)
    grid = 0.01 * torch.tensor([0.02, 0.05])
    out = quantize_bias(bias, torch.tensor([0.01]), torch.tensor([0.02, 0.05]))
    np.testing.assert_allclose(
        out.detach().numpy(), np.rint(bias.detach().numpy() / grid.numpy()) * grid.numpy()
    )
    out.sum().backward()
    np.testing.assert_allclose(bias.grad.numpy(), [1.0, 1.0])


def test_learned_scale_gets_a_gradient():
    quantizer = _calibrated("uint8", 0.0, 1.0, learn=True).train()
    x = torch.linspace(0, 1.5, 101)
    quantizer(x).square().sum().backward()
    assert quantizer.log_gain.grad is not None and quantizer.log_gain.grad.abs().item() > 0
    quantizer.freeze()
    assert not quantizer.log_gain.requires_grad
