"""KD and CE losses against independent formulas, in every precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.losses import LOSSES, kd_divergence
from edgekd.errors import ConfigError, ShapeError

STUDENT = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
TEACHER = np.array([[3.0, 0.0, -2.0], [-1.0, 0.5, 2.5]])
TARGETS = np.array([0, 2])


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _reference_kd(student: np.ndarray, teacher: np.ndarray, y: np.ndarray, t: float, alpha: float) -> float:
    """Hinton's loss written out: sum_k p_t (log p_t - log p_s), batch mean, times T^2."""
    log_ps, log_pt = _np_log_softmax(student / t), _np_log_softmax(teacher / t)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=1).mean()
    ce = -_np_log_softmax(student)[np.arange(len(y)), y].mean()
    return alpha * kl * t * t + (1 - alpha) * ce


def _tensors(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(STUDENT, dtype=dtype), torch.tensor(TEACHER, dtype=dtype), torch.tensor(TARGETS)


@pytest.mark.parametrize(("t", "alpha"), [(4.0, 0.7), (1.0, 0.5), (2.5, 1.0), (8.0, 0.0)])
def test_kd_matches_direct_formula(t: float, alpha: float) -> None:
    s, te, y = _tensors(torch.float64)
    got = LOSSES.get("kd")(s, te, y, temperature=t, alpha=alpha)
    assert got.item() == pytest.approx(_reference_kd(STUDENT, TEACHER, TARGETS, t, alpha), rel=1e-10)


def test_defaults_are_kd_oct_weights() -> None:
    s, te, y = _tensors(torch.float64)
    got = LOSSES.get("kd")(s, te, y)
    assert got.item() == pytest.approx(_reference_kd(STUDENT, TEACHER, TARGETS, 4.0, 0.7), rel=1e-10)


def test_soft_term_scales_with_t_squared() -> None:
    s, te, _ = _tensors(torch.float64)
    for t in (2.0, 4.0):
        kl = F.kl_div(
            F.log_softmax(s / t, 1), F.log_softmax(te / t, 1), log_target=True, reduction="batchmean"
        )
        assert kd_divergence(s, te, t).item() == pytest.approx(kl.item() * t * t, rel=1e-12)


def test_identical_logits_have_zero_divergence() -> None:
    s, _, _ = _tensors()
    assert kd_divergence(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_alpha_zero_equals_cross_entropy() -> None:
    s, te, y = _tensors()
    kd = LOSSES.get("kd")(s, te, y, temperature=4.0, alpha=0.0)
    torch.testing.assert_close(kd, F.cross_entropy(s, y))


def test_ce_ignores_teacher() -> None:
    s, te, y = _tensors()
    ce = LOSSES.get("ce")
    torch.testing.assert_close(ce(s, None, y, temperature=4.0, alpha=0.7), F.cross_entropy(s, y))
    torch.testing.assert_close(ce(s, te * 100, y, temperature=1.0, alpha=1.0), F.cross_entropy(s, y))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_logits_stay_finite(dtype: torch.dtype) -> None:
    # Logits this far apart make half-precision softmax probabilities underflow to 0.
    student = torch.tensor([[60000.0, -60000.0, 0.0], [-3.0e4, 3.0e4, 1.0]]).to(dtype)
    teacher = torch.tensor([[-60000.0, 60000.0, 0.0], [3.0e4, -3.0e4, 1.0]]).to(dtype)
    student.requires_grad_(True)
    y = torch.tensor([1, 0])
    loss = LOSSES.get("kd")(student, teacher, y, temperature=1.0, alpha=0.7)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(student.grad.float()).all()


def test_half_precision_agrees_with_fp32() -> None:
    s, te, y = _tensors()
    full = LOSSES.get("kd")(s, te, y)
    half = LOSSES.get("kd")(s.to(torch.bfloat16), te.to(torch.bfloat16), y)
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    student = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 4])

    def fn(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LOSSES.get("kd")(s, t, y, temperature=3.0, alpha=0.6)

    assert torch.autograd.gradcheck(fn, (student, teacher))


def test_kd_needs_matching_teacher() -> None:
    s, te, y = _tensors()
    with pytest.raises(ShapeError, match="differ in shape"):
        LOSSES.get("kd")(s, te[:, :2], y, temperature=4.0, alpha=0.7)
    with pytest.raises(ConfigError, match="needs teacher logits"):
        LOSSES.get("kd")(s, None, y, temperature=4.0, alpha=0.7)


def test_unknown_loss_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        LOSSES.get("kdd")
    assert "did you mean 'kd'" in info.value.one_line()
