"""Logit distillation losses, registered by name in ``LOSSES``.

Every loss has the signature::

    loss(student_logits [N, K], teacher_logits [N, K] | None, targets int64 [N], **params)
        -> scalar Tensor

and its keyword parameters default to the paper's values (each docstring says which). A
loss that changes over training declares the keyword ``progress`` (a ``Progress``: epoch of
epochs); the objective passes it to every loss that declares it, and it is no recipe parameter.
Only ``kd`` mixes in the label cross-entropy (its historical ``alpha`` contract); every other
loss is the distillation term alone and is combined with ``ce`` through weighted terms
(``edgekd.distill.objective``). Feature losses (fitnet, at, rkd, ofa) live in
``edgekd.distill.feature_losses``.

Logits in fp16/bf16 (autocast) are promoted to fp32 first and probabilities stay in
log-space (``log_softmax``, ``kl_div(log_target=True)``, ``logsumexp``): exponentiating and
then taking logs of half-precision softmax outputs underflows to log(0) = -inf and yields NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgekd.errors import ConfigError, ShapeError
from edgekd.registry import Registry

LossFn = Callable[..., torch.Tensor]

# Feature losses register in a sibling registry of this one's namespace (feature_losses.py):
# a term names either kind, so a name may be held by one loss only.
LOSSES: Registry[LossFn] = Registry("logit loss")
PROGRESS_PARAM = "progress"  # the keyword through which a loss receives ``Progress``


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where training stands: epoch ``epoch`` (1-based) of ``epochs`` is under way.

    Losses that ramp or anneal read it (DKD's warm-up); the training loop sets it once per
    epoch (``DistillObjective.progress``). ``fraction`` is ``epoch / epochs`` in [0, 1]: the
    share of training done when this epoch ends.
    """

    epoch: int
    epochs: int

    @property
    def fraction(self) -> float:
        return min(max(self.epoch / self.epochs, 0.0), 1.0)


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    # fp16/bf16 -> fp32; fp32 and fp64 (gradcheck) are kept as they are.
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def check_logit_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, name: str) -> None:
    """ConfigError without teacher logits; ShapeError unless both are [N, K] of one shape."""
    if teacher_logits is None:
        raise ConfigError(
            f"the {name!r} loss needs teacher logits, but no teacher runs",
            hint="give a teacher, or use only the 'ce' loss",
        )
    if teacher_logits.shape != student_logits.shape or student_logits.ndim != 2:
        raise ShapeError(
            f"the {name!r} loss compares logits [N, K]: the teacher gives {list(teacher_logits.shape)}, "
            f"the student {list(student_logits.shape)}; they differ in shape",
            hint="use a teacher and a student built for the same classes",
        )


def logit_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, name: str):
    """Both logit tensors in a common float dtype of at least fp32, shapes checked."""
    check_logit_pair(student_logits, teacher_logits, name)
    student = _at_least_fp32(student_logits)
    return student, _at_least_fp32(teacher_logits).to(student.dtype)  # type: ignore[union-attr]


def _log_probs(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, name: str, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_student, log p_teacher) [N, K] at ``temperature``, in fp32 or wider; shapes checked."""
    student, teacher = logit_pair(student_logits, teacher_logits, name)
    return F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1)


def _kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` of two [N, K] log-distributions, batch mean."""
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def kd_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over the batch (scalar).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label
    term when T changes (Hinton et al., 2015).
    """
    log_p_student, log_p_teacher = _log_probs(student_logits, teacher_logits, "kd", temperature)
    return _kl(log_p_student, log_p_teacher) * (temperature * temperature)


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

    Hinton et al., "Distilling the Knowledge in a Neural Network" (2015). The defaults
    (T=4, alpha=0.7) give KD-OCT's ``0.7 * KL * T^2 + 0.3 * CE``.

    Args:
        student_logits: [N, K] raw student outputs (any float dtype).
        teacher_logits: [N, K] raw teacher outputs (no gradient needed).
        targets: [N] int64 class indices.
        temperature: softmax temperature T > 0.
        alpha: weight of the soft-target term, in [0, 1].

    Returns:
        Scalar loss in the promoted dtype (fp32 for half inputs).
    """
    soft = kd_divergence(student_logits, teacher_logits, temperature)
    hard = labelled_cross_entropy(student_logits, targets)
    return alpha * soft + (1.0 - alpha) * hard


def labelled_cross_entropy(
    student_logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy averaged over the rows that have a label; rows marked unlabelled (target
    -1, :data:`edgekd.distill.unlabelled.UNLABELLED`) add nothing, and a batch of them alone
    gives 0 (not NaN), without a host sync."""
    logits = _at_least_fp32(student_logits)
    smooth = label_smoothing
    summed = F.cross_entropy(logits, targets, ignore_index=-1, reduction="sum", label_smoothing=smooth)
    return summed / (targets >= 0).sum().clamp_min(1)


# Label terms: they read the targets as they are, unlabelled rows (-1) included, and leave those
# rows out themselves; every other term gets the teacher's top-1 class on an unlabelled row.
kd_loss.reads_unlabelled = True  # type: ignore[attr-defined]


@LOSSES.register("ce")
def ce_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy on the labels; the teacher, ``temperature`` and ``alpha`` are ignored."""
    del teacher_logits, temperature, alpha
    return labelled_cross_entropy(student_logits, targets, label_smoothing)


ce_loss.reads_unlabelled = True  # type: ignore[attr-defined]


@LOSSES.register("rkl")
def rkl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Reverse KL ``KL(student_T || teacher_T) * T^2``, batch mean (mode-seeking).

    As used for generative distillation (Gu et al., "MiniLLM", ICLR 2024), where T=1.
    """
    del targets
    log_p_student, log_p_teacher = _log_probs(student_logits, teacher_logits, "rkl", temperature)
    return _kl(log_p_teacher, log_p_student) * (temperature * temperature)


@LOSSES.register("js")
def js_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Jensen-Shannon divergence ``(KL(p_t || m) + KL(p_s || m)) / 2 * T^2``, m = (p_t + p_s) / 2.

    Symmetric and bounded by log 2 (times T^2). ``log m`` is a ``logsumexp`` of the two
    log-probabilities, so nothing leaves log-space. Default T=1.
    """
    del targets
    log_ps, log_pt = _log_probs(student_logits, teacher_logits, "js", temperature)
    log_m = torch.logsumexp(torch.stack([log_ps, log_pt]), dim=0) - math.log(2.0)
    return 0.5 * (_kl(log_m, log_pt) + _kl(log_m, log_ps)) * (temperature * temperature)


def _split_target(log_p: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p_target [N], log-probabilities of the other classes [N, K-1]) of log_p [N, K]."""
    mask = torch.ones_like(log_p, dtype=torch.bool).scatter_(1, targets[:, None], False)
    log_target = log_p.gather(1, targets[:, None]).squeeze(1)
    return log_target, log_p[mask].view(len(log_p), -1)


def _binary_log(log_target: torch.Tensor, log_rest: torch.Tensor) -> torch.Tensor:
    """[N, 2] log-probabilities (target, not target) with log(1 - p_t) = logsumexp(rest)."""
    return torch.stack([log_target, torch.logsumexp(log_rest, dim=1)], dim=1)


def linear_warmup(progress: Progress | None, warmup_epochs: int) -> float:
    """``min(epoch / warmup_epochs, 1)``: 1 without progress (outside training) or warm-up."""
    if progress is None or warmup_epochs <= 0:
        return 1.0
    return min(progress.epoch / warmup_epochs, 1.0)


@LOSSES.register("dkd")
def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
    warmup_epochs: int = 20,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Decoupled KD: ``warmup * (alpha * TCKD + beta * NCKD) * T^2``.

    Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022. TCKD is the binary KL
    between (p_target, 1 - p_target) of teacher and student; NCKD the KL between the
    distributions renormalised over the non-target classes. Paper defaults: T=4,
    alpha=1, beta=8 (CIFAR-100; beta=0.5 on ImageNet), the total ramped linearly over the
    first ``warmup_epochs`` = 20 epochs: ``warmup`` is ``linear_warmup(progress, warmup_epochs)``.
    """
    log_ps, log_pt = _log_probs(student_logits, teacher_logits, "dkd", temperature)
    s_target, s_rest = _split_target(log_ps, targets)
    t_target, t_rest = _split_target(log_pt, targets)
    tckd = _kl(_binary_log(s_target, s_rest), _binary_log(t_target, t_rest))
    # Renormalising over the non-target classes is a log_softmax of the remaining log-probs.
    nckd = _kl(F.log_softmax(s_rest, dim=1), F.log_softmax(t_rest, dim=1))
    warmup = linear_warmup(progress, warmup_epochs)
    return warmup * (alpha * tckd + beta * nckd) * (temperature * temperature)


@LOSSES.register("nkd")
def nkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    gamma: float = 1.5,
) -> torch.Tensor:
    """Normalized KD: ``-p_t[y] log p_s[y] - gamma * T^2 * sum_{k!=y} q_t,k log q_s,k``, batch mean.

    Yang et al., "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
    Approach with Normalized Loss and Customized Soft Labels", ICCV 2023. The target part
    uses the teacher's target probability (T=1) as the weight of the student's target
    log-probability; q are the non-target distributions renormalised at temperature T.
    Paper defaults (ImageNet): T=1, gamma=1.5. Used instead of CE, or beside it.
    """
    student, teacher = logit_pair(student_logits, teacher_logits, "nkd")
    s_target, _ = _split_target(F.log_softmax(student, dim=1), targets)
    t_target, _ = _split_target(F.log_softmax(teacher, dim=1), targets)
    target_part = -(t_target.exp().detach() * s_target).mean()
    _, s_rest = _split_target(F.log_softmax(student / temperature, dim=1), targets)
    _, t_rest = _split_target(F.log_softmax(teacher / temperature, dim=1), targets)
    q_t = F.softmax(t_rest, dim=1).detach()
    non_target = -(q_t * F.log_softmax(s_rest, dim=1)).sum(dim=1).mean()
    return target_part + gamma * temperature * temperature * non_target


def _pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """Mean of ``1 - pearson(a, b)`` along ``dim`` (rows for dim=1, columns for dim=0)."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    corr = (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)
    return (1.0 - corr).mean()


@LOSSES.register("dist")
def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """DIST: ``T^2 * (beta * inter + gamma * intra)`` with Pearson distances of probabilities.

    Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022. ``inter``
    is ``1 - pearson`` between each sample's class distributions (rows), ``intra`` the same
    between each class's distribution over the batch (columns). Paper defaults (ImageNet):
    T=1, beta=1, gamma=1 (CIFAR-100: T=4, beta=gamma=2).
    """
    del targets
    # Probabilities of at least fp32: exp of an fp32 log_softmax is exact enough here.
    log_ps, log_pt = _log_probs(student_logits, teacher_logits, "dist", temperature)
    p_s, p_t = log_ps.exp(), log_pt.exp()
    inter = _pearson_distance(p_s, p_t, dim=1)
    intra = _pearson_distance(p_s, p_t, dim=0)
    return (beta * inter + gamma * intra) * (temperature * temperature)
