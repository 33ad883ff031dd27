"""A training-free ranking of student candidates, in the spirit of DisWOT (CVPR 2023).

DisWOT ranks students before training by how closely, at initialisation, they already relate
samples and classes the way the teacher does. On one batch of real frames ``x`` [N, ...]:

* **features** ``F`` [N, D]: the input of the network's classifier (the one ``nn.Linear``
  whose output is the [N, K] logits, captured with a forward hook), centred over the batch
  (as CKA does: post-ReLU features are all positive, and their shared mean would otherwise
  make every Gram row nearly alike for every network). A teacher without such a module (an
  ONNX teacher run as a black box, an ensemble of several heads) gives its logits instead.
* **sample relation** ``S = rownorm(F F^T)`` [N, N]: the Gram matrix of the batch, each row
  scaled to unit L2 norm (similarity-preserving KD, Tung & Mori 2019).
* **class relation** ``C = rownorm(G G^T)`` [K, K] with ``G = (U - Y)^T F / N`` [K, D]: the
  gradient of the mean cross-entropy with respect to a linear classifier's weights at uniform
  predictions ``U = 1/K`` (where a student at initialisation is), ``Y`` the one-hot labels.
  With centred features row k of ``G`` is minus the sum of class k's features over N: a
  class-activation vector. DisWOT uses the gradient of each network's own classifier; here
  both networks use ``U``, because a trained teacher's own gradient vanishes on the samples
  it classifies confidently, and because the same formula then gives the same matrix to a
  student identical to the teacher. The labels ``Y`` are the teacher's predictions (no ground
  truth is needed, and they are what the student is taught). With fewer than 3 predicted
  classes ``C`` is the same for every network (the class term is then 0 for all).
* **distances** ``d(A, B) = ||A - B||_F^2 / rows``: the mean squared distance between matching
  unit rows, in [0, 4]; ``class_relation = d(C_t, C_s)``, ``sample_relation = d(S_t, S_s)``,
  and ``score = -(class_relation + sample_relation)`` (higher predicts a better student).

The teacher runs once, in eval mode (its trained BatchNorm statistics). Each student is built
under ``torch.manual_seed(seed)`` (the global RNG state is restored afterwards) and run in
train mode with dropout off: its BatchNorm layers normalise with the batch statistics, as in
DisWOT and as in the first steps of its training, whereas in eval mode the BatchNorm of a
freshly built network (running mean 0, variance 1) leaves activations unnormalised, so the
features of a deep student would reflect initialisation scale rather than architecture.
Everything is computed without autograd, the relations in float64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edgekd.errors import ConfigError, EdgeKDError, ShapeError
from edgekd.search.space import Candidate


@dataclasses.dataclass
class ProxyScore:
    """``score``: higher predicts a better student; ``class_relation`` and
    ``sample_relation``: the two distances to the teacher (each in [0, 4]; lower is closer)."""

    score: float
    class_relation: float
    sample_relation: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Relations:
    """The sample relation [N, N] and class relation [K, K] of one network on one batch."""

    sample: torch.Tensor
    klass: torch.Tensor


def relation(x: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gram matrix: [n, d] -> [n, n], row i = (x_i . x_j)_j / ||(x_i . x_j)_j||.
    A zero row stays zero."""
    return F.normalize(x @ x.T, dim=1)


def relation_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b||_F^2 / rows``: the mean squared distance between matching (unit) rows."""
    return float(((a - b) ** 2).sum() / a.shape[0])


def class_activations(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(U - Y)^T F / N`` [K, D]: the cross-entropy gradient of a linear classifier's weights
    at uniform predictions, for features [N, D] and integer labels [N]."""
    onehot = F.one_hot(labels, num_classes).to(features.dtype)
    return (1.0 / num_classes - onehot).T @ features / features.shape[0]


def relations(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Relations:
    """Both relation matrices of features [N, ...] (flattened to [N, D], taken in float64)."""
    flat = features.reshape(features.shape[0], -1).double()
    # Centred over the batch (as CKA does): post-ReLU features are all positive, and their
    # shared mean would otherwise make every Gram row nearly the same for every network.
    flat = flat - flat.mean(dim=0, keepdim=True)
    return Relations(relation(flat), relation(class_activations(flat, labels, num_classes)))


def _classifier_input(
    model: Any, frames: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D], logits [N, K]): the input of the one nn.Linear that gives the [N, K]
    logits, else the logits themselves."""
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor) and tuple(output.shape) == (frames.shape[0], num_classes):
            seen.append(inputs[0])

    handles = [m.register_forward_hook(hook) for m in _modules(model) if isinstance(m, nn.Linear)]
    try:
        logits = model(frames)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (frames.shape[0], num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ShapeError(f"gave {shape} for frames {tuple(frames.shape)}, not logits [N, {num_classes}]")
    # Several heads (an ensemble) have no single feature space: their averaged logits stand in.
    features = seen[0] if len(seen) == 1 else logits
    return features.detach(), logits.detach()


def _modules(model: Any) -> list[nn.Module]:
    return list(model.modules()) if isinstance(model, nn.Module) else []


def teacher_relations(teacher: Any, frames: torch.Tensor, num_classes: int) -> tuple[Relations, torch.Tensor]:
    """The teacher's relations on ``frames`` (in eval mode) and its predicted labels [N]."""
    was_training = teacher.training if isinstance(teacher, nn.Module) else None
    if isinstance(teacher, nn.Module):
        teacher.eval()  # safe: nn.Module.eval(), inference mode
    try:
        with torch.no_grad():
            features, logits = _classifier_input(teacher, frames, num_classes)
    except ShapeError as exc:
        raise ShapeError(
            f"search proxy: the teacher {exc.message}", hint="check the teacher against the data"
        ) from None
    finally:
        if was_training:
            teacher.train()
    labels = logits.argmax(dim=1)
    return relations(features, labels, num_classes), labels


def student_relations(
    candidate: Candidate,
    frames: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    in_channels: int,
    seed: int,
) -> Relations:
    """A candidate's relations at initialisation (built under ``seed``; BatchNorm on batch
    statistics, dropout off)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = candidate.build(num_classes, in_channels)
        except EdgeKDError as exc:
            raise type(exc)(
                f"search proxy: candidate {candidate.label()}: {exc.message}", hint=exc.hint
            ) from None
        model.train()
        for module in model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()  # safe: nn.Module.eval(), dropout off
        try:
            with torch.no_grad():
                features, _ = _classifier_input(model, frames, num_classes)
        except ShapeError as exc:
            raise ShapeError(f"search proxy: candidate {candidate.label()} {exc.message}") from None
        except RuntimeError as exc:  # e.g. frames too short for the network's downsampling
            detail = " ".join(str(exc).split())[:200]
            shape = tuple(frames.shape)
            raise ShapeError(
                f"search proxy: candidate {candidate.label()} cannot run on frames {shape}: {detail}",
                hint="drop the candidate from search.space.grid or use larger inputs",
            ) from None
    return relations(features, labels, num_classes)


def _check_frames(frames: Any, in_channels: int) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or not frames.is_floating_point() or frames.dim() < 3:
        what = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ShapeError(f"search proxy: frames must be a float tensor [N, C, ...], got {what}")
    if frames.shape[0] < 2:
        # BatchNorm in train mode and a Gram matrix both need more than one sample.
        raise ConfigError(
            f"search proxy: needs at least 2 frames, got {frames.shape[0]}", hint="raise search.proxy_frames"
        )
    if frames.shape[1] != in_channels:
        raise ShapeError(
            f"search proxy: frames have {frames.shape[1]} channels, the models take {in_channels}"
        )
    if not torch.isfinite(frames).all():
        raise ShapeError("search proxy: the frames hold NaN or infinite values", hint="check the data")
    return frames.float()


def proxy_scores(
    teacher: Any,
    candidates: list[Candidate],
    frames: torch.Tensor,
    num_classes: int,
    in_channels: int,
    *,
    seed: int = 0,
) -> dict[str, ProxyScore]:
    """Score every candidate against the teacher on one batch of real frames.

    Args:
        teacher: an ``nn.Module`` or a callable mapping frames to [N, K] logits.
        candidates: the students, each built at initialisation.
        frames: float [N, C, ...] real inputs (N >= 2; 64 class-stratified frames is typical).
        num_classes: K. in_channels: C.
        seed: the weight seed of every student (the same for all: the score is reproducible).

    Returns:
        ``{candidate.key(): ProxyScore}`` for every candidate.

    Raises:
        ShapeError / ConfigError: frames that do not fit, a teacher that does not give [N, K]
            logits, a candidate that cannot be built or run (named by its label).
    """
    frames = _check_frames(frames, in_channels)
    reference, labels = teacher_relations(teacher, frames, num_classes)
    scores: dict[str, ProxyScore] = {}
    for candidate in candidates:
        key = candidate.key()
        if key in scores:
            continue
        student = student_relations(candidate, frames, labels, num_classes, in_channels, seed)
        klass = relation_distance(reference.klass, student.klass)
        sample = relation_distance(reference.sample, student.sample)
        scores[key] = ProxyScore(score=-(klass + sample), class_relation=klass, sample_relation=sample)
    return scores


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two paired sequences (ties in either handled), in [-1, 1].

    ``tau_b = (P - Q) / sqrt((n0 - n1) (n0 - n2))`` with P concordant and Q discordant pairs,
    n0 = n(n-1)/2, and n1, n2 the pairs tied in x and in y. Pairs with a NaN or infinite value
    are left out. None when fewer than 2 pairs remain or either side has no variance.
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs paired sequences, got lengths {len(x)} and {len(y)}")
    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < 2:
        return None
    concordant = discordant = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = pairs[i][0] - pairs[j][0]
            dy = pairs[i][1] - pairs[j][1]
            if dx == 0:
                tied_x += 1
            if dy == 0:
                tied_y += 1
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    n0 = n * (n - 1) // 2
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return None if denominator == 0 else (concordant - discordant) / denominator


__all__ = ["ProxyScore", "Relations", "kendall_tau", "proxy_scores", "relation", "relation_distance"]
