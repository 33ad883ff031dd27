"""Distillation losses, registered by name in ``LOSSES``.

Every loss has the signature::

    loss(student_logits [N, K], teacher_logits [N, K] | None, targets int64 [N], *,
         temperature: float, alpha: float) -> scalar Tensor

Logits in fp16/bf16 (autocast) are promoted to fp32 first and probabilities stay in
log-space (``log_softmax``, ``kl_div(log_target=True)``): exponentiating and then taking
logs of half-precision softmax outputs underflows to log(0) = -inf and yields NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgekd.registry import Registry

LossFn = Callable[..., torch.Tensor]

LOSSES: Registry[LossFn] = Registry("loss")


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    # fp16/bf16 -> fp32; fp32 and fp64 (gradcheck) are kept as they are.
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def kd_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over the batch (scalar).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label
    term when T changes (Hinton et al., 2015).
    """
    student = _at_least_fp32(student_logits)
    teacher = _at_least_fp32(teacher_logits).to(student.dtype)
    log_p_student = F.log_softmax(student / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * (temperature * temperature)


@LOSSES.register("kd")
def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """Hinton KD: ``alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(student, y)``.

    The defaults (T=4, alpha=0.7) give KD-OCT's ``0.7 * KL * T^2 + 0.3 * CE``.

    Args:
        student_logits: [N, K] raw student outputs (any float dtype).
        teacher_logits: [N, K] raw teacher outputs (no gradient needed).
        targets: [N] int64 class indices.
        temperature: softmax temperature T > 0.
        alpha: weight of the soft-target term, in [0, 1].

    Returns:
        Scalar loss in the promoted dtype (fp32 for half inputs).
    """
    if teacher_logits is None:
        raise ValueError("the 'kd' loss needs teacher logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits "
            f"{tuple(student_logits.shape)} differ in shape"
        )
    soft = kd_divergence(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(_at_least_fp32(student_logits), targets)
    return alpha * soft + (1.0 - alpha) * hard


@LOSSES.register("ce")
def ce_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """Plain cross-entropy on the labels; the teacher and the KD settings are ignored."""
    del teacher_logits, temperature, alpha
    return F.cross_entropy(_at_least_fp32(student_logits), targets)
