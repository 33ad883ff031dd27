"""Typed settings of the training loops (``distill.train``, ``teacher.train``, ``distill.kd``).

Recipe form (every key optional)::

    distill:
      kd:
        loss: kd            # simple form: one loss + temperature + alpha
        temperature: 4.0
        alpha: 0.7
        cache_teacher: true # teacher logits computed once (per augmentation view), reused by epochs
        cache_dir: null     # on-disk cache folder (default: <out>/teacher_cache), shared by students
        cache_storage: fp16 # fp16: all K logits; topk: the cache_topk largest, the rest filled
        cache_topk: 5
        cache_max_gib: 8.0  # least recently used caches in cache_dir deleted beyond this (null: never)
        terms:              # or: weighted terms (replaces loss/temperature/alpha)
          - {name: dkd, weight: 1.0, params: {beta: 8.0, warmup_epochs: 5}}
          - {name: ce}
          - {name: fitnet, student: [features.1], teacher: [stages.1]}
          - {name: ofa, student: [features.0, features.1]}
      train: {epochs: 10, schedule: cosine, warmup_epochs: 1, ema: 0.999, amp: auto,
              early_stop_patience: 5, checkpoint_every: 200, deterministic: false,
              num_threads: null, num_workers: auto, ...,
              augment: {time_shift: 16, phase_rotation: true, views: 4, seed: 0}}

An objective of labels alone (``loss: ce``, ``kd`` with ``alpha: 0``, terms that are all ``ce``
or weigh 0) never runs the teacher in training and builds no teacher cache: it is how a student
is trained alone, the baseline KD is measured against (see ``KDConfig.needs_teacher``).

``train.num_threads``: the torch CPU threads of the run (the student's steps, the teacher's
forward passes and its cache, validation); null leaves the count to edgekd's thread policy
(``edgekd.runtime.threads``, which takes ``OMP_NUM_THREADS`` when it is set). The count is
restored when the run ends. Set it to share a machine, or to time training at a fixed count.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Literal

import torch

from edgekd.data.image_augment import ImageAugment
from edgekd.distill.feature_losses import FEATURE_LOSSES
from edgekd.distill.losses import LOSSES, PROGRESS_PARAM
from edgekd.errors import ConfigError
from edgekd.registry import suggestion


@dataclasses.dataclass(frozen=True)
class ParamRange:
    """Allowed values of one loss parameter: a finite number (an integer if ``integer``)
    in ``[low, high]``, with ``low`` excluded when ``low_open``; None: unbounded."""

    low: float | None = 0.0
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return f"a finite {kind.split()[-1]}"

    def admits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


# The range of every loss parameter, by name; (loss, parameter) entries override the name's.
PARAM_RANGES: dict[str, ParamRange] = {
    "temperature": ParamRange(low_open=True),  # softmax(z / T): T = 0 divides by zero
    "alpha": ParamRange(high=1.0),  # kd/ce: alpha * soft + (1 - alpha) * hard
    "beta": ParamRange(),
    "gamma": ParamRange(),
    "label_smoothing": ParamRange(high=1.0),
    "warmup_epochs": ParamRange(integer=True),
    "p": ParamRange(low_open=True),  # at: |f|^p
    "eps": ParamRange(),  # ofa: (1 + p_t)^eps
    "distance_weight": ParamRange(),
    "angle_weight": ParamRange(),
}
_LOSS_PARAM_RANGES: dict[tuple[str, str], ParamRange] = {
    ("dkd", "alpha"): ParamRange(),  # DKD's alpha weighs TCKD (paper 1.0), not a mix in [0, 1]
}


def param_range(loss: str, param: str) -> ParamRange:
    """The allowed values of ``param`` of ``loss`` (a finite number when nothing narrower is known)."""
    return _LOSS_PARAM_RANGES.get((loss, param)) or PARAM_RANGES.get(param) or ParamRange(low=None)


@dataclasses.dataclass
class AugmentConfig:
    """Random training views (off by default): of IQ frames [2, L] (``time_shift``,
    ``phase_rotation``; see ``edgekd.distill.augment``) or of images (``image``: crop, flip,
    affine, brightness/contrast/speckle; see ``edgekd.data.image_augment``).

    Each view is a pure function of (``seed``, frame index, view number): epoch e shows every
    frame's view ``(e - 1) % views``, so a teacher-logit cache of ``views`` views per frame
    holds exactly what the student sees in every epoch.
    """

    time_shift: int = 0  # largest circular shift in samples, uniform in [-time_shift, time_shift]; 0: off
    phase_rotation: bool = False  # rotate each frame's I/Q by a uniform carrier phase in [0, 2*pi)
    # Image views, drawn in the DataLoader workers from uint8 pixels (``image: {}``: the defaults).
    image: ImageAugment | None = None
    views: int = 4  # distinct views per frame, cycled over the epochs
    seed: int = 0  # apart from train.seed, so students with other seeds share one teacher cache

    def spec(self) -> dict[str, Any]:
        """The settings as plain data, for cache keys and resume fingerprints; without ``image``
        when it is unset, so keys from before image views existed still match."""
        spec = dataclasses.asdict(self)
        if self.image is None:
            del spec["image"]
        return spec

    @property
    def iq_enabled(self) -> bool:
        """Whether the IQ views (shift, phase: applied to a batch by frame index) are on."""
        return self.time_shift > 0 or self.phase_rotation

    @property
    def image_enabled(self) -> bool:
        """Whether the image views (drawn by the dataset per sample) are on."""
        return self.image is not None and self.image.enabled

    @property
    def enabled(self) -> bool:
        return self.iq_enabled or self.image_enabled

    @property
    def view_count(self) -> int:
        """Views the loop cycles through: 1 (the frame itself) when augmentation is off."""
        return self.views if self.enabled else 1

    def validate(self) -> None:
        if self.time_shift < 0:
            raise ConfigError(f"train.augment.time_shift must be >= 0, got {self.time_shift}")
        if self.views < 1:
            raise ConfigError(f"train.augment.views must be >= 1, got {self.views}")
        if self.image is not None:
            self.image.validate("train.augment.image")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings shared by supervised training and distillation."""

    epochs: int = 8
    batch_size: int = 256  # global batch: split evenly across processes under torchrun
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 1e-4  # applied to weights only, not to biases or norm scales
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int | None = None  # "step": epochs between decays (None: epochs // 3, at least 1)
    step_gamma: float = 0.1  # "step": factor applied at each decay
    warmup_epochs: int = 0  # linear warm-up from ~0 to lr, per iteration
    grad_clip: float | None = None  # max global L2 norm of the gradients
    ema: float | None = None  # decay of an exponential moving average of the weights (e.g. 0.999)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only; CPU always trains in fp32
    channels_last: bool = False  # CUDA only, 4-D (image) inputs only
    early_stop_patience: int | None = None  # stop after this many epochs without a better val accuracy
    checkpoint_every: int = 0  # also save the resume state every N steps (0: at epoch ends only)
    deterministic: bool = False  # torch.use_deterministic_algorithms (needed for exact resume on GPU)
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    num_threads: int | None = None  # torch CPU threads for the run (None: edgekd's thread policy)
    # DataLoader worker processes reading lazy data ("auto": one per core, up to 8; data held
    # in memory is sliced in the training process and never uses workers).
    num_workers: int | Literal["auto"] = "auto"
    # Under torchrun: BatchNorm with the statistics of the whole global batch (torch's
    # SyncBatchNorm, CUDA only), so a run matches one process; see edgekd.distill.distributed.
    sync_batchnorm: bool = False
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    def validate(self) -> None:
        self.augment.validate()
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(
                f"train needs epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(
                f"train.lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(
                f"train.warmup_epochs must be in [0, epochs), "
                f"got {self.warmup_epochs} with epochs={self.epochs}"
            )
        if self.step_size is not None and self.step_size < 1:
            raise ConfigError(f"train.step_size must be >= 1 or null, got {self.step_size}")
        if not 0 < self.step_gamma <= 1:
            raise ConfigError(f"train.step_gamma must be in (0, 1], got {self.step_gamma}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"train.ema must be in (0, 1) or null, got {self.ema}", hint="try 0.999")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ConfigError(
                f"train.early_stop_patience must be >= 1 or null, got {self.early_stop_patience}"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(f"train.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"train.num_threads must be >= 1 or null, got {self.num_threads}")
        if self.num_workers != "auto" and (isinstance(self.num_workers, bool) or self.num_workers < 0):
            raise ConfigError(
                f"train.num_workers must be 'auto' or >= 0, got {self.num_workers}",
                hint="0 reads lazy data in the training process",
            )
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(
                    f"train.device {self.device!r} is not a device", hint="use auto, cpu, cuda or cuda:N"
                ) from None


def loss_names() -> list[str]:
    """Every loss a term may name: logit losses and feature losses (one namespace)."""
    return LOSSES.namespace_names()


def loss_params(name: str) -> dict[str, Any]:
    """The parameters (with their paper defaults) a term of loss ``name`` accepts."""
    if name in FEATURE_LOSSES:
        return dict(FEATURE_LOSSES.get(name).PARAMS)
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}", hint=suggestion(name, loss_names(), "known losses"))
    sig = inspect.signature(LOSSES.get(name))
    keyword_only = (p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    # ``progress`` is the loop's to give (edgekd.distill.objective), not the recipe's.
    return {p.name: p.default for p in keyword_only if p.name != PROGRESS_PARAM}


@dataclasses.dataclass
class LossTerm:
    """One weighted term of the distillation objective.

    ``weight`` null takes the loss's customary weight (1; fitnet 100, at 1000).
    ``student``/``teacher`` are module paths whose outputs feature losses compare, in pairs
    (fitnet, at, rkd), or student stages that get projection heads (ofa).
    """

    name: str
    weight: float | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    student: list[str] = dataclasses.field(default_factory=list)
    teacher: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_feature_loss(self) -> bool:
        return self.name in FEATURE_LOSSES

    @property
    def needs_teacher_features(self) -> bool:
        return self.is_feature_loss and FEATURE_LOSSES.get(self.name).needs_teacher_features

    def resolved_weight(self) -> float:
        if self.weight is not None:
            return self.weight
        return FEATURE_LOSSES.get(self.name).default_weight if self.is_feature_loss else 1.0

    def validate(self) -> None:
        where = f"distill.kd.terms[{self.name}]"
        accepted = loss_params(self.name)  # unknown name -> did you mean
        for key, value in self.params.items():
            if key not in accepted:
                raise ConfigError(
                    f"{where}: unknown parameter {key!r}",
                    hint=suggestion(str(key), sorted(accepted), f"parameters of {self.name!r}"),
                )
            allowed = param_range(self.name, key)
            if not allowed.admits(value):
                raise ConfigError(
                    f"{where}: {key} must be {allowed.describe()}, got {value!r}"[:300],
                    hint=f"the paper's default is {accepted[key]!r}",
                )
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"{where}: weight must be a finite number >= 0, got {self.weight}")
        if not self.is_feature_loss:
            if self.student or self.teacher:
                raise ConfigError(
                    f"{where}: {self.name!r} compares logits and takes no module paths",
                    hint="remove student/teacher, or use fitnet, at, rkd or ofa",
                )
            return
        if not self.student:
            raise ConfigError(
                f"{where}: name the student module paths to tap", hint="e.g. student: [features.1]"
            )
        if self.needs_teacher_features and len(self.teacher) != len(self.student):
            raise ConfigError(
                f"{where}: {len(self.student)} student and {len(self.teacher)} teacher paths; "
                f"{self.name!r} compares them in pairs",
                hint="list as many teacher paths as student paths",
            )
        if not self.needs_teacher_features and self.teacher:
            raise ConfigError(f"{where}: {self.name!r} uses no teacher features", hint="remove teacher")


#: How logs name an objective of labels alone.
LABELS_ONLY = "labels only, no teacher"


def effective_terms(terms: list[LossTerm]) -> list[LossTerm]:
    """``terms`` as they act: a term of weight 0 dropped (it adds nothing, and must not make the
    teacher run), and ``kd`` with alpha 0 (``0 * KL * T^2 + CE``) written as the ``ce`` it is."""
    kept = []
    for term in terms:
        if term.resolved_weight() == 0:
            continue
        if term.name == "kd" and term.params.get("alpha", loss_params("kd")["alpha"]) == 0:
            term = LossTerm("ce", term.weight)
        kept.append(term)
    return kept


@dataclasses.dataclass
class KDConfig:
    """Distillation objective: the simple form (``loss``/``temperature``/``alpha``) or ``terms``.

    Simple form: ``loss: kd`` (or ``ce``) is ``alpha * KL * T^2 + (1 - alpha) * CE``; any
    other logit loss X becomes ``alpha * X(temperature=T) + (1 - alpha) * CE``.
    """

    loss: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft-target term; 1 - alpha weighs the labels
    # The teacher is frozen in eval mode and every augmentation view is a pure function of
    # (seed, frame, view), so its logits per view never change: compute them once, not per epoch.
    # Feature terms (fitnet, at, rkd) need the teacher's activations: it then runs per batch.
    cache_teacher: bool = True
    cache_dir: str | None = None  # None: <out>/teacher_cache, or memory only when there is no out dir
    cache_storage: Literal["fp16", "topk"] = "fp16"
    cache_topk: int = 5  # with cache_storage topk: logits kept per frame (the rest share the left mass)
    # A shared cache_dir gains one file per (teacher, data, augmentation, storage): after a new
    # one is written, the least recently used others go until the folder fits (None: keep all).
    cache_max_gib: float | None = 8.0
    terms: list[LossTerm] = dataclasses.field(default_factory=list)
    # With unlabelled frames (data.unlabelled, data.hide_labels): the share of each batch they
    # fill, in (0, 1); "auto" shuffles them with the labelled frames (their share of the set).
    unlabelled_share: float | Literal["auto"] = "auto"

    def validate(self) -> None:
        if self.unlabelled_share != "auto" and not 0 < self.unlabelled_share < 1:
            raise ConfigError(
                f"distill.kd.unlabelled_share must be 'auto' or between 0 and 1, got {self.unlabelled_share}",
                hint="e.g. 0.5: half of each batch unlabelled frames",
            )
        if self.cache_topk < 1:
            raise ConfigError(f"distill.kd.cache_topk must be >= 1, got {self.cache_topk}")
        if self.cache_max_gib is not None and not self.cache_max_gib > 0:
            raise ConfigError(
                f"distill.kd.cache_max_gib must be > 0, got {self.cache_max_gib}",
                hint="give a size in GiB, e.g. 8, or null to never delete teacher caches",
            )
        if self.terms:
            if (self.loss, self.temperature, self.alpha) != ("kd", 4.0, 0.7):
                raise ConfigError(
                    "distill.kd sets both terms and loss/temperature/alpha",
                    hint="put temperature and weights into each term's params and weight, and drop the rest",
                )
            for term in self.terms:
                term.validate()
            return
        if self.loss in FEATURE_LOSSES:
            raise ConfigError(
                f"distill.kd.loss {self.loss!r} is a feature loss and needs module paths",
                hint=f"use distill.kd.terms: [{{name: {self.loss}, student: [...], ...}}, {{name: kd}}]",
            )
        loss_params(self.loss)  # unknown name -> ConfigError with "did you mean"
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"distill.kd.temperature must be > 0, got {self.temperature}", hint="e.g. 4")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill.kd.alpha must be in [0, 1], got {self.alpha}", hint="e.g. 0.7")

    def resolved_terms(self) -> list[LossTerm]:
        """The objective as weighted terms (the simple form translated)."""
        if self.terms:
            return list(self.terms)
        if self.loss in ("kd", "ce"):
            return [LossTerm(self.loss, 1.0, {"temperature": self.temperature, "alpha": self.alpha})]
        params = {"temperature": self.temperature} if "temperature" in loss_params(self.loss) else {}
        return [LossTerm(self.loss, self.alpha, params), LossTerm("ce", 1.0 - self.alpha)]

    def describe(self) -> str:
        """One line for logs, e.g. ``loss kd T=4 alpha=0.7``, ``1*dkd(beta=8) + 100*fitnet[...]``,
        or ``ce (labels only, no teacher)``."""
        if not self.terms:
            if not self.needs_teacher:  # T and alpha mean nothing without the teacher's logits
                return f"ce ({LABELS_ONLY})"
            return f"loss {self.loss} T={self.temperature:g} alpha={self.alpha:g}"
        parts = []
        for term in self.terms:
            args = ", ".join(f"{k}={v}" for k, v in term.params.items())
            paths = f"[{','.join(term.student)}->{','.join(term.teacher)}]" if term.student else ""
            parts.append(f"{term.resolved_weight():g}*{term.name}({args}){paths}")
        return " + ".join(parts) + ("" if self.needs_teacher else f" ({LABELS_ONLY})")

    @property
    def needs_teacher(self) -> bool:
        """Whether any term that acts (:func:`effective_terms`) reads the teacher's logits or
        features; False for labels alone, when training never runs the teacher."""
        return any(t.name != "ce" for t in effective_terms(self.resolved_terms()))

    @property
    def needs_teacher_features(self) -> bool:
        return any(t.needs_teacher_features for t in self.resolved_terms())


@dataclasses.dataclass
class TrainResult:
    """Per-epoch records (epoch, train_loss, val_accuracy, lr, seconds) and the best epoch."""

    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool = False
    steps: int = 0  # optimizer steps taken in total
