"""Distillation losses as ``nn.Module``s for your own training loop, and feature taps by path.

Every class is a thin front for the loss that ``edgekd distill`` trains with (one
implementation: ``edgekd.distill.losses`` and ``edgekd.distill.feature_losses``), with the
same paper defaults, computed in fp32 log-space also under autocast. Teacher inputs are
detached, so gradients reach the student (and the loss's own projectors) only. Each returns
the unweighted term: weigh and sum the terms yourself.

>>> kd, fitnet = KD(temperature=4.0), FitNet()
>>> with taps(student, ["body.1"]) as s_taps, taps(teacher, ["body.1"], detach=True) as t_taps:
...     with torch.no_grad():
...         t_logits = teacher(x)
...     s_logits = student(x)
...     loss = ce(s_logits, y) + kd(s_logits, t_logits) + 100 * fitnet(s_taps.collect(), t_taps.collect())

Logit losses take ``[N, K]`` logits and ``[N]`` int64 class indices; feature losses one tensor
or a list per side, paired in order (``[N, D]``, ``[N, C, L]`` or ``[N, C, H, W]``). ``FitNet``
and ``OFA`` own layers created from the first features they see: call the loss once (or
``.build(shapes)``) before you build the optimizer, so that its parameters exist to hand to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from edgekd.distill import feature_losses as _features
from edgekd.distill import losses as _logits
from edgekd.distill.config import param_range
from edgekd.distill.features import FeatureTaps
from edgekd.errors import ConfigError, ShapeError

__all__ = ["AT", "CE", "DIST", "DKD", "JS", "KD", "NKD", "OFA", "RKD", "RKL", "FeatureTaps", "FitNet", "taps"]

Features = torch.Tensor | Sequence[torch.Tensor]
Shapes = Sequence[int] | Sequence[Sequence[int]]
_Built = TypeVar("_Built", bound="_FeatureLoss")
# Paired feature losses read only the features; LossInputs still wants logits and targets.
_UNUSED = torch.empty(0)


def taps(model: nn.Module, paths: str | Iterable[str], *, detach: bool = False) -> FeatureTaps:
    """Record the outputs of the submodules at ``paths`` on every forward pass of ``model``.

    Works on any ``nn.Module``: paths are those of ``model.named_modules()`` (``"layer1.0"``,
    ``"head.fc"``, ``"2"`` in an ``nn.Sequential``). The model is not changed; hooks go away on
    ``remove()`` or at the end of a ``with`` block. ``collect()`` returns the latest outputs in
    the order of ``paths`` (a module returning a tuple gives its first tensor) and clears them.

    Args:
        model: the network to tap.
        paths: one module path or several.
        detach: keep no autograd graph (for a teacher).

    Raises:
        ConfigError: a path that is not a submodule (the message suggests the closest one).

    >>> with taps(model, ["layer1.0", "head.fc"]) as t:
    ...     logits = model(x)
    ...     layer1, fc = t.collect()
    """
    return FeatureTaps(model, paths, detach=detach)


def _checked(owner: nn.Module, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` when each is in the range the recipe allows, else a one-line ConfigError."""
    for key, value in params.items():
        allowed = param_range(name, key)
        if not allowed.admits(value):
            got = repr(value)[:80]
            raise ConfigError(
                f"edgekd.losses.{type(owner).__name__}: {key} must be {allowed.describe()}, got {got}"
            )
    return params


def _check_targets(owner: nn.Module, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """``targets`` when it is [N] integer class indices for [N, K] ``logits``."""
    where = f"edgekd.losses.{type(owner).__name__}"
    if targets is None:
        raise ConfigError(f"{where} needs the targets", hint="pass [N] int64 class indices as targets")
    if targets.dtype.is_floating_point or targets.ndim != 1 or len(targets) != len(logits):
        raise ShapeError(
            f"{where}: targets are {targets.dtype} {list(targets.shape)}; the logits are "
            f"{list(logits.shape)}, so the targets must be [{len(logits)}] int64 class indices",
            hint="pass class indices, not one-hot or soft labels",
        )
    return targets


def _detached(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach()


class _LogitLoss(nn.Module):
    """Calls the registered logit loss ``name`` with this module's parameters."""

    name: ClassVar[str]  # the name in edgekd.distill.losses.LOSSES (and in recipes)
    needs_targets: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = _checked(self, self.name, params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())

    def _loss(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        targets: torch.Tensor | None,
        **extra: Any,
    ) -> torch.Tensor:
        if self.needs_targets:
            _check_targets(self, student_logits, targets)
        loss = _logits.LOSSES.get(self.name)
        return loss(student_logits, _detached(teacher_logits), targets, **self.params, **extra)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scalar loss (fp32 or wider) of [N, K] student and teacher logits and [N] targets."""
        return self._loss(student_logits, teacher_logits, targets)


class KD(_LogitLoss):
    """Hinton KD: ``alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(student, y)``.

    Hinton et al., "Distilling the Knowledge in a Neural Network" (2015). Here ``alpha``
    defaults to 1, the soft term alone, to be added to your own cross-entropy; ``alpha=0.7``
    with T=4 is KD-OCT's ``0.7 * KL * T^2 + 0.3 * CE`` (the recipe's ``kd``), and needs targets.

    >>> kd = KD(temperature=4.0)
    >>> loss = kd(student_logits, teacher_logits)  # [N, K], [N, K] -> scalar
    """

    name = "kd"

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0) -> None:
        super().__init__(temperature=temperature, alpha=alpha)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        if targets is None and self.params["alpha"] == 1.0:
            # The label term has weight 0: the soft term is the whole loss.
            return _logits.kd_divergence(
                student_logits, _detached(teacher_logits), self.params["temperature"]
            )
        if targets is None:
            raise ConfigError(
                f"edgekd.losses.KD(alpha={self.params['alpha']}) mixes in the label cross-entropy, "
                "but no targets were given",
                hint="call kd(student_logits, teacher_logits, targets), or use alpha=1.0",
            )
        return self._loss(student_logits, teacher_logits, targets)


class CE(_LogitLoss):
    """Cross-entropy of the student's logits and the labels, with optional label smoothing.

    >>> ce = CE(label_smoothing=0.1)
    >>> loss = ce(student_logits, targets)  # [N, K], [N] int64 -> scalar
    """

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing=label_smoothing)

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._loss(student_logits, None, targets)


class RKL(_LogitLoss):
    """Reverse KL ``KL(student_T || teacher_T) * T^2``, mode-seeking (Gu et al., MiniLLM, 2024).

    >>> loss = RKL()(student_logits, teacher_logits)
    """

    name = "rkl"
    needs_targets = False

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)


class JS(_LogitLoss):
    """Jensen-Shannon divergence of teacher and student at temperature T, times T^2.

    >>> loss = JS(temperature=2.0)(student_logits, teacher_logits)
    """

    name = "js"
    needs_targets = False

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)


class DKD(_LogitLoss):
    """Decoupled KD: ``warmup * (alpha * TCKD + beta * NCKD) * T^2`` (Zhao et al., CVPR 2022).

    Paper defaults (CIFAR-100; beta=0.5 on ImageNet). The loss ramps up linearly over the
    first ``warmup_epochs``: ``warmup = min(epoch / warmup_epochs, 1)`` with ``epoch`` counted
    from 1; without ``epoch`` there is no ramp (warmup = 1).

    >>> dkd = DKD(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20)
    >>> for epoch in range(1, epochs + 1):
    ...     loss = dkd(student_logits, teacher_logits, targets, epoch=epoch, epochs=epochs)
    """

    name = "dkd"

    def __init__(
        self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup_epochs: int = 20
    ) -> None:
        super().__init__(temperature=temperature, alpha=alpha, beta=beta, warmup_epochs=warmup_epochs)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        epoch: int | None = None,
        epochs: int | None = None,
    ) -> torch.Tensor:
        """Scalar loss; ``epoch`` (1-based) of ``epochs`` sets the warm-up, both or neither."""
        progress = _progress(epoch, epochs)
        return self._loss(student_logits, teacher_logits, targets, **{_logits.PROGRESS_PARAM: progress})


def _progress(epoch: int | None, epochs: int | None) -> _logits.Progress | None:
    if epoch is None and epochs is None:
        return None
    if epoch is None or epochs is None:
        raise ConfigError("edgekd.losses.DKD: pass epoch and epochs together", hint="e.g. epoch=3, epochs=30")
    if not (isinstance(epoch, int) and isinstance(epochs, int) and min(epoch, epochs) >= 1):
        raise ConfigError(
            f"edgekd.losses.DKD: epoch {epoch!r} of {epochs!r}: both must be integers >= 1",
            hint="epochs count from 1: in a `for epoch in range(epochs)` loop pass epoch + 1",
        )
    return _logits.Progress(epoch, epochs)


class NKD(_LogitLoss):
    """Normalized KD (Yang et al., ICCV 2023): the teacher's target probability weighs the
    student's, plus ``gamma * T^2`` times the cross-entropy of the non-target distributions.

    >>> loss = NKD(temperature=1.0, gamma=1.5)(student_logits, teacher_logits, targets)
    """

    name = "nkd"

    def __init__(self, temperature: float = 1.0, gamma: float = 1.5) -> None:
        super().__init__(temperature=temperature, gamma=gamma)


class DIST(_LogitLoss):
    """DIST (Huang et al., NeurIPS 2022): ``T^2 * (beta * inter + gamma * intra)`` Pearson
    distances of the class probabilities per sample (inter) and per class over the batch (intra).

    >>> loss = DIST()(student_logits, teacher_logits)  # CIFAR-100: DIST(4.0, beta=2.0, gamma=2.0)
    """

    name = "dist"
    needs_targets = False

    def __init__(self, temperature: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> None:
        super().__init__(temperature=temperature, beta=beta, gamma=gamma)


def _tensor_list(features: Features, side: str, owner: nn.Module) -> list[torch.Tensor]:
    listed = [features] if isinstance(features, torch.Tensor) else list(features)
    if not listed or not all(isinstance(f, torch.Tensor) for f in listed):
        raise ConfigError(
            f"edgekd.losses.{type(owner).__name__}: {side} features must be a tensor or a non-empty "
            "list of tensors",
            hint="pass taps(...).collect() or the tensors themselves",
        )
    return listed


def _shape_list(shapes: Shapes | torch.Tensor | Sequence[torch.Tensor]) -> list[tuple[int, ...]]:
    """One shape (ints), a list of shapes, or example tensors -> a list of shapes."""
    if isinstance(shapes, torch.Tensor):
        return [tuple(shapes.shape)]
    if all(isinstance(d, int) for d in shapes):
        return [tuple(shapes)]  # type: ignore[arg-type]
    return [tuple(s.shape) if isinstance(s, torch.Tensor) else tuple(s) for s in shapes]  # type: ignore[union-attr]


def _examples(shapes: list[tuple[int, ...]], device: Any, dtype: torch.dtype) -> list[torch.Tensor]:
    # Building reads only shape, device and dtype: one stored value expanded to a batch of 1.
    return [torch.empty((1,) * len(s), device=device, dtype=dtype).expand(1, *s[1:]) for s in shapes]


class _FeatureLoss(nn.Module):
    """Holds the registered feature loss ``name`` as ``self.loss``; builds it on first use."""

    name: ClassVar[str]  # the name in edgekd.distill.feature_losses.FEATURE_LOSSES
    fixed_channels: ClassVar[bool] = False  # trainable layers fix the channel counts

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.loss = _features.FEATURE_LOSSES.get(self.name)(**_checked(self, self.name, params))
        # (student, teacher) feature shapes at build, batch dim 1: the trainable layers fit them.
        self._built: tuple[list[tuple[int, ...]], list[tuple[int, ...]]] = ([], [])

    @property
    def built(self) -> bool:
        """Whether the trainable layers (if any) exist: after ``build`` or the first call."""
        return self.loss.built

    def _build_or_check(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], num_classes: int
    ) -> None:
        # Without trainable layers, building only checks the shapes: do it on every call.
        if not self.built or not self.fixed_channels:
            self.loss.build(student, teacher, num_classes)
            self.loss.train(self.training)  # new layers follow the mode set before they existed
            self._built = ([(1, *f.shape[1:]) for f in student], [(1, *f.shape[1:]) for f in teacher])
            return
        for side, features, shapes in zip(
            ("student", "teacher"), (student, teacher), self._built, strict=True
        ):
            got = [(f.ndim, f.shape[1]) for f in features]
            if got != [(len(s), s[1]) for s in shapes]:
                raise ShapeError(
                    f"edgekd.losses.{type(self).__name__} was built for {side} features "
                    f"{', '.join(map(_shape, shapes))}, got {', '.join(_shape(f.shape) for f in features)}",
                    hint="pass features of the shapes the loss was built with, or make a new loss",
                )


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(["N", *map(str, shape[1:])]) + "]"


class _PairedFeatureLoss(_FeatureLoss):
    """Compares student and teacher features in pairs (FitNet, AT, RKD)."""

    def build(
        self: _Built,
        student_shapes: Shapes | Sequence[torch.Tensor],
        teacher_shapes: Shapes | Sequence[torch.Tensor],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> _Built:
        """Create the trainable layers now, from full feature shapes (batch size ignored) or
        example tensors, on ``device``; returns the loss. Then hand ``parameters()`` to the optimizer."""
        student, teacher = _shape_list(student_shapes), _shape_list(teacher_shapes)
        self._pair(_examples(student, device, dtype), _examples(teacher, device, dtype))
        return self

    def _pair(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> None:
        if len(student) != len(teacher):
            raise ShapeError(
                f"edgekd.losses.{type(self).__name__} compares features in pairs: got "
                f"{len(student)} student and {len(teacher)} teacher features",
                hint="pass as many teacher features as student features, in matching order",
            )
        self._build_or_check(student, teacher, num_classes=0)

    def forward(self, student_features: Features, teacher_features: Features) -> torch.Tensor:
        """Scalar loss (fp32 or wider), the mean over the pairs of features."""
        student = _tensor_list(student_features, "student", self)
        teacher = [f.detach() for f in _tensor_list(teacher_features, "teacher", self)]
        self._pair(student, teacher)
        return self.loss(_features.LossInputs(_UNUSED, None, _UNUSED, student, teacher))


class FitNet(_PairedFeatureLoss):
    """FitNets hint (Romero et al., ICLR 2015): ``mean_pairs MSE(project(f_s), f_t)``.

    The projector of each pair is a trainable ``Linear`` (vectors) or 1x1 convolution (maps)
    from the student's channels to the teacher's; student maps are average-pooled to the
    teacher's spatial size. The projectors exist after the first call or ``build()``: only
    then put ``fitnet.parameters()`` in the optimizer (and call ``load_state_dict`` only after
    it). Customary weight: 100 (CRD benchmark).

    >>> fitnet = FitNet().build(student_shapes=[(1, 32, 8, 8)], teacher_shapes=[(1, 64, 4, 4)])
    >>> optimizer = torch.optim.SGD([*student.parameters(), *fitnet.parameters()], lr=0.05)
    >>> loss = 100 * fitnet(student_feature, teacher_feature)
    """

    name = "fitnet"
    fixed_channels = True

    def __init__(self) -> None:
        super().__init__()


class AT(_PairedFeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017): mean squared difference of the
    L2-normalised attention maps ``mean_c |f_c|^p`` of [N, C, L] or [N, C, H, W] features.

    Channel counts may differ; the larger map is pooled to the smaller's size. No parameters.
    Customary weight: 1000.

    >>> loss = 1000 * AT(p=2.0)(student_maps, teacher_maps)
    """

    name = "at"

    def __init__(self, p: float = 2.0) -> None:
        super().__init__(p=p)


class RKD(_PairedFeatureLoss):
    """Relational KD (Park et al., CVPR 2019): Huber losses between the students' and the
    teacher's pairwise distances (normalised by their mean) and triplet angles of the batch.

    Features of any shape are flattened to [N, D]; D may differ between the sides. No
    parameters. Cost O(N^3 D) for the angles.

    >>> loss = RKD(distance_weight=25.0, angle_weight=50.0)(student_embedding, teacher_embedding)
    """

    name = "rkd"

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__(distance_weight=distance_weight, angle_weight=angle_weight)


class OFA(_FeatureLoss):
    """One-for-All KD (Hao et al., NeurIPS 2023): the OFA loss on the final logits and on
    trainable heads that map each student stage to class logits. Only the teacher's logits
    are used, so teacher and student may be of any architecture.

    The term includes the label's cross-entropy. Each head (1x1 conv + BN + ReLU + pooling
    + linear; an MLP for vectors) exists after the first call or ``build()``: only then put
    ``ofa.parameters()`` in the optimizer, and switch the loss between training and evaluation
    mode with the student (the heads hold BatchNorm).

    >>> ofa = OFA(eps=1.5).build(student_shapes=[(1, 32, 8, 8)], num_classes=10)
    >>> loss = ofa(student_logits, teacher_logits, targets, student_stage_features)
    """

    name = "ofa"
    fixed_channels = True

    def __init__(self, temperature: float = 1.0, eps: float = 1.0) -> None:
        super().__init__(temperature=temperature, eps=eps)
        self._num_classes = 0

    def build(
        self,
        student_shapes: Shapes | Sequence[torch.Tensor],
        num_classes: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> OFA:
        """Create the heads now, from full student feature shapes (batch size ignored) or example
        tensors, for ``num_classes`` classes, on ``device``; returns the loss."""
        self._build_or_check(_examples(_shape_list(student_shapes), device, dtype), [], num_classes)
        self._num_classes = num_classes
        return self

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor,
        student_features: Features,
    ) -> torch.Tensor:
        """Scalar loss (fp32 or wider) of [N, K] logits, [N] targets and the student's stages."""
        student = _tensor_list(student_features, "student", self)
        _check_targets(self, student_logits, targets)
        num_classes = student_logits.shape[-1]
        if not self.built:
            self._num_classes = num_classes
        self._build_or_check(student, [], num_classes)
        if num_classes != self._num_classes:
            raise ShapeError(
                f"edgekd.losses.OFA: its heads give {self._num_classes} classes, the logits {num_classes}",
                hint="build the loss for as many classes as the student predicts",
            )
        inputs = _features.LossInputs(student_logits, _detached(teacher_logits), targets, student, [])
        return self.loss(inputs)
