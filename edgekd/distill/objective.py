"""The training objective: a weighted sum of loss terms, with their projectors as parameters.

``DistillObjective`` is an ``nn.Module`` so that projectors and OFA heads train with the
student (they join its optimizer and, under torchrun, its DistributedDataParallel wrapper).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from edgekd.distill.config import LossTerm, effective_terms
from edgekd.distill.feature_losses import FEATURE_LOSSES, LossInputs
from edgekd.distill.losses import LOSSES, PROGRESS_PARAM, Progress
from edgekd.distill.unlabelled import pseudo_targets
from edgekd.errors import ConfigError


def _unique(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(paths))


class DistillObjective(nn.Module):
    """``sum_i weight_i * term_i(inputs)`` over ``terms``; ``forward`` also returns each part.

    Feature terms are built lazily: call ``build()`` once with example features (the loop
    does, from a two-frame forward pass) before the optimizer is made. The loop sets
    ``progress`` at the start of every epoch; it stays None outside training.
    """

    progress: Progress | None

    def __init__(self, terms: list[LossTerm]) -> None:
        super().__init__()
        self.progress = None
        # Set by distill() when the training set holds unlabelled frames (target UNLABELLED):
        # then terms that need a class on every row get the teacher's top-1 on those rows.
        self.has_unlabelled = False
        if not terms:
            raise ConfigError("the distillation objective has no terms", hint="add at least one loss term")
        for term in terms:
            term.validate()
        # As the terms act: a weight-0 term dropped, kd at alpha 0 as ce, so that an objective of
        # labels alone is seen as one and the loop never runs the teacher for it.
        self.terms = effective_terms(list(terms))
        if not self.terms:
            raise ConfigError(
                "every term of the distillation objective has weight 0", hint="give a term a weight > 0"
            )
        self.feature_terms = nn.ModuleDict(
            {
                str(i): FEATURE_LOSSES.get(t.name)(**t.params)
                for i, t in enumerate(self.terms)
                if t.is_feature_loss
            }
        )
        for key, module in self.feature_terms.items():
            term = self.terms[int(key)]
            module.student_paths, module.teacher_paths = list(term.student), list(term.teacher)
        # Logit terms: the function and whether it declares ``progress`` (read once, not per batch).
        self._logit_terms = {
            i: (LOSSES.get(t.name), takes_progress(LOSSES.get(t.name)))
            for i, t in enumerate(self.terms)
            if not t.is_feature_loss
        }
        self._reads_unlabelled = [
            not t.is_feature_loss and getattr(LOSSES.get(t.name), "reads_unlabelled", False)
            for t in self.terms
        ]

    @property
    def student_paths(self) -> list[str]:
        return _unique([p for t in self.terms for p in t.student])

    @property
    def teacher_paths(self) -> list[str]:
        return _unique([p for t in self.terms for p in t.teacher])

    @property
    def needs_teacher(self) -> bool:
        """False when every term is of the labels alone (``ce``): the teacher never runs."""
        return any(t.name != "ce" for t in self.terms)

    @property
    def needs_teacher_features(self) -> bool:
        return bool(self.teacher_paths)

    @property
    def is_built(self) -> bool:
        return all(m.built for m in self.feature_terms.values())

    def build(
        self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], num_classes: int
    ) -> None:
        """Create every feature term's projectors from example features keyed by module path."""
        for key, module in self.feature_terms.items():
            term = self.terms[int(key)]
            module.build([student[p] for p in term.student], [teacher[p] for p in term.teacher], num_classes)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        targets: torch.Tensor,
        student_features: dict[str, torch.Tensor],
        teacher_features: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total scalar loss in fp32 or wider, {term label: unweighted value}).

        Every term sees ``self.progress``: feature losses in ``LossInputs.progress``, logit
        losses as the keyword ``progress`` when their signature declares it.
        """
        total = None
        parts: dict[str, torch.Tensor] = {}
        # Label terms read `targets` (unlabelled rows marked); the others a class on every row.
        classes = pseudo_targets(targets, teacher_logits) if self.has_unlabelled else targets
        for i, term in enumerate(self.terms):
            inputs = LossInputs(
                student_logits,
                teacher_logits,
                targets if self._reads_unlabelled[i] else classes,
                [student_features[p] for p in term.student],
                [teacher_features[p] for p in term.teacher],
                self.progress,
            )
            value = self._term_loss(i, term, inputs)
            parts[f"{i}:{term.name}"] = value.detach()
            weighted = term.resolved_weight() * value
            total = weighted if total is None else total + weighted
        return total, parts

    def _term_loss(self, i: int, term: LossTerm, inputs: LossInputs) -> torch.Tensor:
        if term.is_feature_loss:
            return self.feature_terms[str(i)](inputs)
        loss, wants_progress = self._logit_terms[i]
        params = dict(term.params)
        if wants_progress:
            params[PROGRESS_PARAM] = inputs.progress
        return loss(inputs.student_logits, inputs.teacher_logits, inputs.targets, **params)


def takes_progress(loss: Callable[..., torch.Tensor]) -> bool:
    """Whether a logit loss declares the keyword ``progress`` (see ``edgekd.distill.losses``)."""
    return PROGRESS_PARAM in inspect.signature(loss).parameters
