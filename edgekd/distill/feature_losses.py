"""Feature distillation losses, registered by name in ``FEATURE_LOSSES``.

Each entry is an ``nn.Module`` class built as ``cls(**params)``. It declares which inputs
it needs (teacher features or only teacher logits), builds its projectors lazily in
``build()`` from the first observed feature shapes (the training loop calls it once, before
the optimizer is made, so the projectors train with the student), then maps
``LossInputs`` (which carries the training ``Progress``) to a scalar. Its name shares one
namespace with the logit losses (``FEATURE_LOSSES`` refuses a name ``LOSSES`` holds, and the
other way round). Features are [N, D] vectors, [N, C, L] 1-D maps or
[N, C, H, W] 2-D maps; every loss is computed in fp32 (or fp64 under gradcheck).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import LOSSES, Progress, check_logit_pair
from edgekd.errors import ShapeError
from edgekd.registry import Registry


@dataclasses.dataclass
class LossInputs:
    """Everything a loss term may look at for one mini-batch."""

    student_logits: torch.Tensor  # [N, K]
    teacher_logits: torch.Tensor | None  # [N, K], None when no teacher runs (supervised)
    targets: torch.Tensor  # [N] int64
    student_features: list[torch.Tensor] = dataclasses.field(default_factory=list)  # the term's paths
    teacher_features: list[torch.Tensor] = dataclasses.field(default_factory=list)
    progress: Progress | None = None  # where training stands (None outside training)


class FeatureLoss(nn.Module):
    """Base class: ``PARAMS`` are the paper's defaults; subclasses override ``build``/``forward``."""

    PARAMS: ClassVar[dict[str, Any]] = {}
    default_weight: ClassVar[float] = 1.0
    needs_teacher_features: ClassVar[bool] = True
    needs_teacher_logits: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = {**self.PARAMS, **params}
        self.built = False
        # Module paths of the features, for error messages (set by the objective).
        self.student_paths: list[str] = []
        self.teacher_paths: list[str] = []

    def build(self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int) -> None:
        """Create projectors from example features (shapes only); called once."""
        self.built = True

    def feature_name(self, side: str, i: int) -> str:
        """``student feature 'features.1'`` (or ``student feature #1`` when paths are unknown)."""
        paths = self.student_paths if side == "student" else self.teacher_paths
        return f"{side} feature {paths[i]!r}" if i < len(paths) else f"{side} feature #{i}"

    def _names(self, i: int) -> tuple[str, str]:
        return self.feature_name("student", i), self.feature_name("teacher", i)


FEATURE_LOSSES: Registry[type[FeatureLoss]] = Registry("feature loss", shares_names_with=LOSSES)


def _fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _resize_like(x: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """Average-pool (or repeat) [N, C, *S] to [N, C, *spatial]; no-op when sizes agree."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    pool = F.adaptive_avg_pool1d if x.ndim == 3 else F.adaptive_avg_pool2d
    return pool(x, spatial)


def _shape(shape: tuple[int, ...]) -> str:
    return f"[N, {', '.join(map(str, shape[1:]))}]" if len(shape) > 1 else f"{list(shape)}"


def check_feature_ranks(
    loss: str, student: tuple[int, ...], teacher: tuple[int, ...], names: tuple[str, str], ranks=(2, 3, 4)
) -> None:
    """ShapeError unless both features have one rank among ``ranks`` (and a channel dim)."""
    s_name, t_name = names
    for name, shape in ((s_name, student), (t_name, teacher)):
        if len(shape) not in ranks or any(d < 1 for d in shape[1:]):
            raise ShapeError(
                f"{loss!r}: {name} is {_shape(shape)}; it needs "
                + " or ".join(("[N, D]", "[N, C, L]", "[N, C, H, W]")[r - 2] for r in ranks),
                hint="tap another module (a convolutional stage, or a pooled vector where allowed)",
            )
    if len(student) != len(teacher):
        raise ShapeError(
            f"{loss!r}: {s_name} {_shape(student)} and {t_name} {_shape(teacher)} differ in rank",
            hint="tap modules whose outputs are both vectors, both 1-D maps or both 2-D maps",
        )


def make_projector(
    student_shape: tuple[int, ...],
    teacher_shape: tuple[int, ...],
    names: tuple[str, str] = ("student", "teacher"),
) -> nn.Module:
    """A trainable map from student features to the teacher's channel count.

    [N, Ds] -> Linear(Ds, Dt); [N, Cs, L] -> Conv1d 1x1; [N, Cs, H, W] -> Conv2d 1x1.
    Spatial sizes are matched afterwards by ``_resize_like`` (no parameters). ``names`` (the
    two features) appear in the ShapeError raised for ranks that differ or are unsupported.
    """
    check_feature_ranks("fitnet", student_shape, teacher_shape, names)
    c_s, c_t = student_shape[1], teacher_shape[1]
    if len(student_shape) == 2:
        return nn.Linear(c_s, c_t)
    if len(student_shape) == 3:
        return nn.Conv1d(c_s, c_t, 1)
    return nn.Conv2d(c_s, c_t, 1)


@FEATURE_LOSSES.register("fitnet")
class FitNetLoss(FeatureLoss):
    """FitNets hint: ``mean_pairs MSE(project(f_s), f_t)``.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. The paper trains the hint
    in a first stage; here it is a term beside KD/CE, with the weight 100 that the CRD
    benchmark (Tian et al., ICLR 2020) uses for it. The regressor is a 1x1 convolution
    (a linear layer for vectors) built from the observed channel counts; student maps are
    average-pooled to the teacher's spatial size.
    """

    default_weight = 100.0

    def build(self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int) -> None:
        self.projectors = nn.ModuleList(
            make_projector(tuple(s.shape), tuple(t.shape), self._names(i))
            for i, (s, t) in enumerate(zip(student, teacher, strict=True))
        ).to(student[0].device, _fp32(student[0]).dtype)
        super().build(student, teacher, num_classes)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        losses = []
        for proj, f_s, f_t in zip(
            self.projectors, inputs.student_features, inputs.teacher_features, strict=True
        ):
            f_t = _fp32(f_t)
            projected = _fp32(proj(f_s.to(next(proj.parameters()).dtype)))
            losses.append(F.mse_loss(_resize_like(projected, f_t.shape[2:]), f_t.to(projected.dtype)))
        return torch.stack(losses).mean()


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """[N, C, *S] -> [N, prod(S)]: L2-normalised ``mean_c |f_c|^p`` (Zagoruyko & Komodakis)."""
    return F.normalize(_fp32(feature).abs().pow(p).mean(dim=1).flatten(1), dim=1)


@FEATURE_LOSSES.register("at")
class AttentionTransferLoss(FeatureLoss):
    """Attention transfer: ``mean_pairs mean((Q_s - Q_t)^2)`` of normalised attention maps.

    Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017: Q = vec(sum_c
    |f_c|^p) / ||.||_2 with p=2 and weight beta=1000 (the authors' code averages the squared
    difference, as here). Channel counts may differ (no projector); the larger map is
    average-pooled to the smaller's spatial size.
    """

    PARAMS: ClassVar[dict[str, Any]] = {"p": 2.0}
    default_weight = 1000.0

    def build(self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int) -> None:
        # Attention maps are spatial: vectors have none, and a 1-D map cannot meet a 2-D one.
        for i, (s, t) in enumerate(zip(student, teacher, strict=True)):
            check_feature_ranks("at", tuple(s.shape), tuple(t.shape), self._names(i), ranks=(3, 4))
        super().build(student, teacher, num_classes)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        losses = []
        for f_s, f_t in zip(inputs.student_features, inputs.teacher_features, strict=True):
            size = tuple(min(a, b) for a, b in zip(f_s.shape[2:], f_t.shape[2:], strict=True))
            q_s = attention_map(_resize_like(_fp32(f_s), size), self.params["p"])
            q_t = attention_map(_resize_like(_fp32(f_t), size), self.params["p"]).to(q_s.dtype)
            losses.append((q_s - q_t).pow(2).mean())
        return torch.stack(losses).mean()


def _pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """[N, D] -> [N, N] Euclidean distances, normalised by their mean over pairs i != j."""
    sq = e.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * e @ e.T).clamp_min(1e-12)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    d = torch.where(off, d2.sqrt(), torch.zeros_like(d2))
    return d / d[off].mean().clamp_min(1e-12)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """[N, D] -> [N, N, N]: cos of the angle at vertex a between e_b - e_a and e_c - e_a."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2))


@FEATURE_LOSSES.register("rkd")
class RelationalLoss(FeatureLoss):
    """Relational KD: ``w_d * Huber(psi_D(s), psi_D(t)) + w_a * Huber(psi_A(s), psi_A(t))``.

    Park et al., "Relational Knowledge Distillation", CVPR 2019: psi_D are pairwise distances
    normalised by their mean, psi_A the cosines of all triplet angles; paper weights
    distance_weight=25, angle_weight=50. Features are flattened to [N, D] (D may differ
    between student and teacher: only relations are compared). Cost O(N^3 D) for angles.
    """

    PARAMS: ClassVar[dict[str, Any]] = {"distance_weight": 25.0, "angle_weight": 50.0}

    def build(self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int) -> None:
        # Any rank flattens to [N, D]; a feature without a dim after the batch, or an empty one, cannot.
        for i, pair in enumerate(zip(student, teacher, strict=True)):
            for name, feature in zip(self._names(i), pair, strict=True):
                if feature.ndim < 2 or feature[0].numel() == 0:
                    raise ShapeError(
                        f"'rkd': {name} is {_shape(tuple(feature.shape))}; it needs [N, ...] with "
                        "at least one value per sample",
                        hint="tap a module that outputs a feature per sample",
                    )
        super().build(student, teacher, num_classes)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        losses = []
        for f_s, f_t in zip(inputs.student_features, inputs.teacher_features, strict=True):
            e_s = _fp32(f_s).flatten(1)
            e_t = _fp32(f_t).flatten(1).to(e_s.dtype).detach()
            loss = e_s.new_zeros(())
            if self.params["distance_weight"]:
                dist = F.smooth_l1_loss(_pairwise_distances(e_s), _pairwise_distances(e_t))
                loss = loss + self.params["distance_weight"] * dist
            if self.params["angle_weight"]:
                angle = F.smooth_l1_loss(_angles(e_s), _angles(e_t))
                loss = loss + self.params["angle_weight"] * angle
            losses.append(loss)
        return torch.stack(losses).mean()


def ofa_term(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    eps: float = 1.0,
) -> torch.Tensor:
    """``-(1 + p_t[y])^eps log p_s[y] - sum_{k != y} p_t,k log p_s,k``, batch mean (OFA, Eq. 6).

    ``eps`` > 1 strengthens the target class when the teacher is unsure of it. Both logits
    are [N, K] of one shape (else ShapeError: a [N, 1] teacher would silently broadcast).
    """
    check_logit_pair(student_logits, teacher_logits, "ofa")
    log_ps = F.log_softmax(_fp32(student_logits) / temperature, dim=1)
    log_pt = F.log_softmax(_fp32(teacher_logits).to(log_ps.dtype) / temperature, dim=1)
    p_t = log_pt.exp().detach()
    onehot = F.one_hot(targets, log_ps.shape[1]).to(log_ps.dtype)
    weights = onehot * (1.0 + p_t).pow(eps) + (1.0 - onehot) * p_t
    return -(weights * log_ps).sum(dim=1).mean()


def _ofa_head(shape: tuple[int, ...], num_classes: int, name: str = "student feature") -> nn.Module:
    """Stage features -> logits: 1x1 conv + BN + ReLU + global average pool + linear."""
    check_feature_ranks("ofa", shape, shape, (name, name))
    channels = shape[1]
    hidden = max(channels, 2 * num_classes)
    if len(shape) == 2:
        return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if len(shape) == 3 else (nn.Conv2d, nn.BatchNorm2d)
    return nn.Sequential(
        conv(channels, hidden, 1, bias=False),
        norm(hidden),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1) if len(shape) == 3 else nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(hidden, num_classes),
    )


@FEATURE_LOSSES.register("ofa")
class OneForAllLoss(FeatureLoss):
    """One-for-All KD: OFA loss on the final logits and on projection heads at student stages.

    Hao et al., "One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge
    Distillation", NeurIPS 2023. Only the teacher's *logits* are used, so any pair works
    (ConvNeXt -> EfficientNet, transformer -> CNN, an ONNX black-box teacher). Paper
    defaults: temperature 1, eps 1 (1.5 on CIFAR-100), weight 1; the term includes the
    label's cross-entropy (eps >= 0 weighs the target at least 1). Heads here are a 1x1
    conv + BN + ReLU + pooling + linear (the paper uses deeper depthwise stacks).
    """

    PARAMS: ClassVar[dict[str, Any]] = {"temperature": 1.0, "eps": 1.0}
    needs_teacher_features = False
    needs_teacher_logits = True

    def build(self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int) -> None:
        heads = nn.ModuleList(
            _ofa_head(tuple(s.shape), num_classes, self.feature_name("student", i))
            for i, s in enumerate(student)
        )
        self.heads = heads.to(student[0].device, _fp32(student[0]).dtype)
        super().build(student, teacher, num_classes)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        t, eps = self.params["temperature"], self.params["eps"]
        total = ofa_term(inputs.student_logits, inputs.teacher_logits, inputs.targets, t, eps)
        for head, f_s in zip(self.heads, inputs.student_features, strict=True):
            head_logits = head(f_s.to(next(head.parameters()).dtype))
            total = total + ofa_term(head_logits, inputs.teacher_logits, inputs.targets, t, eps)
        return total
