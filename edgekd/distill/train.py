"""Public training entry points: supervised (teacher) training and knowledge distillation.

``train_supervised`` and ``distill`` validate their inputs, move the networks to the
configured device and run the shared loop (``edgekd.distill.loop``): seeded shuffled
batches, per-iteration LR schedule (cosine/step/constant with warm-up), optional EMA,
AMP and channels_last on CUDA, early stopping, exact resume and DDP under torchrun. Both
finish with the best validation epoch's weights in the model, in eval mode.

With ``out_dir`` they write ``metrics.csv``, ``metrics.jsonl``, ``best.pt``, ``last.pt``
and ``train_state.pt`` there (rank 0 only, plus TensorBoard scalars in ``tensorboard/`` when
TensorBoard is installed); ``resume=True`` continues a killed run from ``train_state.pt`` and
ends with the same weights as an uninterrupted one. ``distill`` keeps the teacher's logits in
an on-disk cache (``edgekd.distill.teacher_cache``) that later runs and other students reuse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.data.batches import in_memory, memory_arrays, network_input_shape
from edgekd.distill import distributed as ddp
from edgekd.distill.augment import check_augmentable, with_image_views
from edgekd.distill.checks import (
    check_datasets,
    check_fits,
    cpu_threads,
    evaluate_model,
    inference_batch_size,
    predict_logits,
    resolve_device,
)
from edgekd.distill.config import KDConfig, LossTerm, TrainConfig, TrainResult
from edgekd.distill.distributed import process_device
from edgekd.distill.features import FeatureTaps
from edgekd.distill.finite import describe_teacher
from edgekd.distill.loop import FitOptions, Log, StepCallback, Teacher, fit
from edgekd.distill.objective import DistillObjective
from edgekd.distill.optim import lr_at
from edgekd.distill.teacher_cache import teacher_logits_cache
from edgekd.errors import ConfigError

__all__ = [
    "KDConfig",
    "LossTerm",
    "TrainConfig",
    "TrainResult",
    "check_fits",
    "distill",
    "evaluate_model",
    "lr_at",
    "predict_logits",
    "resolve_device",
    "train_supervised",
]


def train_supervised(
    model: nn.Module,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    log: Log | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    on_step: StepCallback | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` with cross-entropy on the labels (e.g. a teacher).

    ``train`` and ``val``: map-style datasets (:mod:`edgekd.data.mapstyle`, lazy ones read by
    ``train.num_workers`` DataLoader workers) or in-memory ``ArrayDataset`` s.

    ``model`` is moved to ``cfg.device`` and ends there, in eval mode, holding the
    weights of its best validation epoch. ``progress`` shows a progress bar per epoch.
    """
    cfg.validate()
    device = process_device(resolve_device(cfg.device))
    ddp.check_sync_batchnorm(cfg.sync_batchnorm, device)
    model.to(device)
    check_datasets(model, train, val, "model")
    check_augmentable(network_input_shape(train), cfg.augment)
    train = with_image_views(train, cfg.augment)
    objective = DistillObjective([LossTerm("ce", 1.0)])
    opts = FitOptions(Path(out_dir) if out_dir is not None else None, resume, log, on_step, progress)
    with cpu_threads(cfg.num_threads, deterministic=cfg.deterministic):
        return fit(model, objective, Teacher(), train, val, cfg, opts)


def _supports_features(teacher: Any) -> bool:
    # Black-box teachers (the ONNX Runtime one) declare supports_features = False.
    return isinstance(teacher, nn.Module) and getattr(teacher, "supports_features", True)


def distill(
    student: nn.Module,
    teacher: Any,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    kd: KDConfig,
    log: Log | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    on_step: StepCallback | None = None,
    progress: bool = False,
    teacher_name: str | None = None,
    unlabelled: Any = None,
) -> TrainResult:
    """Train ``student`` to match a frozen ``teacher`` with the objective ``kd``.

    Args:
        student: network mapping [N, *frame] -> [N, K]; trained in place.
        teacher: an ``nn.Module`` (frozen, eval mode) or a black-box callable returning
            logits [N, K] (with ``supports_features = False``: logit losses only); None for an
            objective of labels alone (``distill.kd.loss: ce``), which never runs a teacher.
        train, val: datasets with the same frame shape and classes: map-style
            (:mod:`edgekd.data.mapstyle`; lazy ones are read by ``cfg.num_workers``
            DataLoader workers) or in-memory ``ArrayDataset`` s.
        cfg: optimisation settings. kd: the loss terms.
        out_dir: folder for metrics, best/last weights and the resume state (optional).
        cache_dir: the teacher cache's folder when ``kd.cache_dir`` is not set (default
            ``out_dir/teacher_cache``; with neither, the cache stays in memory).
        resume: continue from ``out_dir/train_state.pt`` when it exists.
        on_step: called with the global step after every optimizer step (tests, progress).
        progress: show a progress bar per epoch on stderr.
        teacher_name: how errors name the teacher, e.g. ``teacher runs/t/teacher.pt`` (default:
            its ONNX file or its class, :func:`edgekd.distill.finite.describe_teacher`).
        unlabelled: frames without labels (a dataset like ``train``; its labels, if any, are
            ignored) that the student learns from the teacher alone: every frame gets the
            teacher terms, the labelled ones also the label terms; ``kd.unlabelled_share`` sets
            their share of each batch (:mod:`edgekd.distill.unlabelled`).

    The teacher's logits (of every ``cfg.augment`` view) are computed once when
    ``kd.cache_teacher`` and no term needs teacher features, else per batch. Both networks
    are moved to ``cfg.device``. NaN or infinite teacher outputs (cached or live) stop the
    run with an error that names the teacher and the step.
    """
    objective, device = _prepare_networks(student, teacher, train, val, cfg, kd)
    opts = FitOptions(Path(out_dir) if out_dir is not None else None, resume, log, on_step, progress)
    if unlabelled is not None and len(unlabelled):
        train = _with_pool(train, unlabelled, objective, kd, opts)
    train = with_image_views(train, cfg.augment)
    teacher_taps = (
        FeatureTaps(teacher, objective.teacher_paths, "teacher", detach=True)
        if objective.teacher_paths
        else None
    )
    name = teacher_name or describe_teacher(teacher)
    # The process group (under torchrun) is joined before the cache, so rank 0 alone writes it.
    ctx = ddp.setup_distributed(device)
    try:
        with cpu_threads(cfg.num_threads, deterministic=cfg.deterministic):
            cache = None
            if kd.cache_teacher and teacher_taps is None and objective.needs_teacher:
                cache = _teacher_cache(
                    teacher, train, cfg, kd, _cache_dir(kd, cache_dir, out_dir), log, ctx, name
                )
            if log is not None and ctx.is_main:
                if kd.cache_teacher and teacher_taps is not None:
                    log("teacher cache: not used, the feature terms need the teacher's activations")
                log(_start_line(kd, objective, device, cache is not None, opts, len(train)))
            return fit(student, objective, Teacher(teacher, cache, teacher_taps, name), train, val, cfg, opts)
    finally:
        ddp.teardown(ctx)
        if teacher_taps is not None:
            teacher_taps.remove()


def _start_line(
    kd: KDConfig,
    objective: DistillObjective,
    device: torch.device,
    cached: bool,
    opts: FitOptions,
    frames: int,
) -> str:
    """The log line that opens a run: the objective, the device, where teacher logits come from
    and, with unlabelled frames, how many of each kind and how batches mix them."""
    if not objective.needs_teacher:
        return f"training with {kd.describe()} on {device}"
    how = "cached teacher logits" if cached else "teacher run per batch"
    if opts.labelled_frames is not None:
        pool = frames - opts.labelled_frames
        share = opts.unlabelled_share
        mixing = "shuffled together" if share is None else f"{share:.0%} of each batch unlabelled"
        how += f"; {opts.labelled_frames} labelled + {pool} unlabelled frames, {mixing}"
    return f"distilling with {kd.describe()} on {device} ({how})"


def _with_pool(train: Any, pool: Any, objective: DistillObjective, kd: KDConfig, opts: FitOptions) -> Any:
    """The training set of labelled frames and then the pool's; ``opts`` and ``objective`` learn
    where the pool starts and how batches mix it in."""
    if not objective.needs_teacher:
        raise ConfigError(
            f"unlabelled frames were given, but the objective {kd.describe()} reads labels alone",
            hint="use a teacher term (e.g. distill.kd.loss: kd), or give no unlabelled frames",
        )
    from edgekd.data.pooled import pool_training_frames

    pooled = pool_training_frames(train, pool)
    opts.labelled_frames = len(train)
    opts.unlabelled_share = None if kd.unlabelled_share == "auto" else float(kd.unlabelled_share)
    objective.has_unlabelled = True
    return pooled


def _teacher_cache(teacher, train, cfg: TrainConfig, kd: KDConfig, folder: Path | None, log, ctx, name: str):
    """The teacher's logits of every training frame and view: one file for data held in memory
    (``teacher_cache``), memory-mapped shards written while streaming for lazy data
    (``dataset_cache``)."""
    batch_size = inference_batch_size(cfg.batch_size, network_input_shape(train))
    common = {"log": log, "is_main": ctx.is_main, "barrier": ddp.barrier, "teacher_name": name}
    if in_memory(train):
        return teacher_logits_cache(
            teacher,
            memory_arrays(train)[0],
            train.num_classes,
            cfg.augment,
            kd,
            cache_dir=folder,
            batch_size=batch_size,
            **common,
        )
    from edgekd.distill.dataset_cache import dataset_logits_cache

    return dataset_logits_cache(
        teacher,
        train,
        cfg.augment,
        kd,
        cache_dir=folder,
        batch_size=batch_size,
        workers=cfg.num_workers,
        **common,
    )


def _prepare_networks(
    student: nn.Module, teacher: Any, train: Any, val: Any, cfg: TrainConfig, kd: KDConfig
) -> tuple[DistillObjective, torch.device]:
    """Check the settings, the data and both networks; move them to the device, freeze the teacher.

    Returns the objective built from ``kd`` and this process's device.
    """
    cfg.validate()
    kd.validate()
    objective = DistillObjective(kd.resolved_terms())
    if teacher is None and objective.needs_teacher:
        raise ConfigError(
            f"no teacher, but the objective {kd.describe()} needs one",
            hint="give a teacher, or set distill.kd.loss: ce to train the student on its labels alone",
        )
    if objective.needs_teacher_features and not _supports_features(teacher):
        raise ConfigError(
            f"the teacher ({type(teacher).__name__}) gives no intermediate features, but distill.kd.terms "
            f"ask for teacher paths {objective.teacher_paths}",
            hint="use logit losses (kd, dkd, nkd, dist, ofa...) with this teacher",
        )
    device = process_device(resolve_device(cfg.device))
    ddp.check_sync_batchnorm(cfg.sync_batchnorm, device)
    student.to(device)
    if isinstance(teacher, nn.Module):
        teacher.to(device).eval()  # safe: nn.Module.eval(), inference mode
        for p in teacher.parameters():
            p.requires_grad_(False)
    check_datasets(student, train, val, "student")
    if teacher is not None:
        check_fits(teacher, network_input_shape(train), train.num_classes, "teacher")
    check_augmentable(network_input_shape(train), cfg.augment)
    return objective, device


def _cache_dir(
    kd: KDConfig, default: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str] | None
) -> Path | None:
    """``kd.cache_dir``, else the caller's default, else ``out_dir/teacher_cache``; None: memory only."""
    if kd.cache_dir:
        return Path(kd.cache_dir)
    if default is not None:
        return Path(default)
    return Path(out_dir) / "teacher_cache" if out_dir is not None else None
