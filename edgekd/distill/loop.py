"""The training loop shared by supervised training and distillation.

Seeded shuffled mini-batches, sliced from memory or read by DataLoader workers from a lazy
dataset (``edgekd.distill.feed``: the same batches either way), a per-iteration LR
schedule, optional EMA, AMP and channels_last on CUDA, validation after every epoch,
best/last weights and an exact-resume state in the output folder, early stopping, and
DistributedDataParallel under torchrun. Finishes with the best epoch's weights loaded into
the student.

Everything a resume needs lives in one :class:`~edgekd.distill.run_state.RunState`, saved
and restored in one place (``_snapshot``, ``_resume``); what is rebuilt on every start
(settings, data, the wrapped step module) is the ``_RunContext``. ``_start`` builds both,
then each epoch is ``_train_epoch`` (``_train_step`` per batch) and ``_close_epoch``
(validation, best weights, early stopping, files).

With ``train.augment`` the student's batch is the epoch's view of each frame
(``edgekd.distill.augment``); teacher logits come from the cache of that same view
(``edgekd.distill.teacher_cache``) or from the teacher run on the batch the student sees; an
objective of labels alone (``DistillObjective.needs_teacher`` False) never runs the teacher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.artifacts import durable
from edgekd.config import to_dict
from edgekd.data.batches import model_input, network_arrays, network_input_shape
from edgekd.distill import distributed as ddp
from edgekd.distill import state as files
from edgekd.distill.augment import EpochView, check_augmentable, view_of_epoch
from edgekd.distill.checks import inference_batch_size, model_device, predict_dataset
from edgekd.distill.config import TrainConfig, TrainResult
from edgekd.distill.features import FeatureTaps
from edgekd.distill.feed import make_feed, storage_blocks
from edgekd.distill.finite import FiniteWatch
from edgekd.distill.losses import Progress
from edgekd.distill.objective import DistillObjective
from edgekd.distill.optim import Schedule, make_optimizer
from edgekd.distill.reporting import EpochProgress, TensorBoardScalars
from edgekd.distill.run_state import EpochLoss, ModelEMA, RunState, ShuffledBatches
from edgekd.distill.teacher_cache import CachedLogits
from edgekd.distill.unlabelled import mark_unlabelled
from edgekd.errors import ConfigError

Log = Callable[[str], None]
StepCallback = Callable[[int], None]  # called with the global step count after each optimizer step


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None on CPU or with amp off; "auto" = bf16 where supported, else fp16."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


@dataclasses.dataclass
class Teacher:
    """How the loop gets teacher outputs: cached logits by (view, row), or a model run per batch."""

    model: Any = None  # nn.Module or a callable returning logits
    cache: CachedLogits | None = None  # every training frame's logits in every augmentation view
    taps: FeatureTaps | None = None  # hooks on the teacher for feature terms
    name: str = "teacher"  # in errors, e.g. "teacher runs/t/teacher.pt"

    def outputs(self, x: torch.Tensor, idx: torch.Tensor, view: int, device: torch.device, autocast) -> tuple:
        """(logits [B, K] or None, {path: feature}) for the batch ``x`` = rows ``idx`` in ``view``."""
        if self.cache is not None and self.taps is None:
            return self.cache.lookup(idx, view, device), {}
        if self.model is None:
            return None, {}
        with torch.no_grad(), autocast:
            logits = torch.as_tensor(self.model(x))
        feats = dict(zip(self.taps.paths, self.taps.collect(), strict=True)) if self.taps else {}
        return logits, feats


class _TrainStep(nn.Module):
    """Student forward + objective in one module, so DDP synchronises projector gradients too."""

    def __init__(self, student: nn.Module, objective: DistillObjective, taps: FeatureTaps) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.taps = taps

    def forward(self, x, y, teacher_logits, teacher_feats):
        logits = self.student(x)
        feats = dict(zip(self.taps.paths, self.taps.collect(), strict=True)) if self.taps.paths else {}
        return self.objective(logits, teacher_logits, y, feats, teacher_feats)


@dataclasses.dataclass
class FitOptions:
    """Run-level options that are not part of the recipe's train section."""

    out_dir: Path | None = None  # metrics, best/last weights, resume state (rank 0 writes)
    resume: bool = False  # continue from out_dir/train_state.pt when it exists
    log: Log | None = None
    on_step: StepCallback | None = None
    progress: bool = False  # a rich progress bar per epoch on stderr (rank 0; the caller checks for a TTY)
    # With unlabelled frames (edgekd.distill.unlabelled): rows >= labelled_frames have no label,
    # and unlabelled_share is their share of each batch (None: shuffled in with the rest).
    labelled_frames: int | None = None
    unlabelled_share: float | None = None


def _build_objective(
    objective: DistillObjective,
    student: nn.Module,
    taps: FeatureTaps,
    teacher: Teacher,
    x: torch.Tensor,
    k: int,
) -> None:
    """Run two frames through both networks (eval mode, no grad) to size the projectors."""
    if objective.is_built:
        return
    device = model_device(student)
    with torch.no_grad():
        was = student.training
        student.eval()  # safe: nn.Module.eval(), inference mode
        student(x.to(device))
        student.train(was)
        s_feats = dict(zip(taps.paths, taps.collect(), strict=True))
        t_feats: dict[str, torch.Tensor] = {}
        if teacher.taps is not None:
            teacher.model(x.to(model_device(teacher.model)))
            t_feats = dict(zip(teacher.taps.paths, teacher.taps.collect(), strict=True))
    objective.build(s_feats, t_feats, k)
    objective.to(device)


def fit(
    student: nn.Module,
    objective: DistillObjective,
    teacher: Teacher,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    opts: FitOptions,
) -> TrainResult:
    """Train ``student`` (already on its device) on ``objective``; see the module docstring.

    ``train`` and ``val`` are map-style datasets (:mod:`edgekd.data.mapstyle`) or in-memory
    :class:`~edgekd.data.dataset.ArrayDataset` s.

    What training writes (metrics, best/last weights, the resume state) is durable: a command
    that fails later keeps it, so ``--resume`` can continue the run.
    """
    if not objective.needs_teacher:
        # Labels alone: the teacher's outputs would be thrown away, so it never runs (a forward
        # pass per batch made an epoch about 4x longer), and no cache is read.
        teacher = Teacher(name=teacher.name)
    ctx = ddp.setup_distributed(model_device(student))
    try:
        with durable():
            return _fit(student, objective, teacher, train, val, cfg, opts, ctx)
    finally:
        ddp.teardown(ctx)


@dataclasses.dataclass
class _RunContext:
    """What a run builds when it starts and never saves (the saved part is the RunState)."""

    cfg: TrainConfig
    opts: FitOptions
    ctx: ddp.DistContext
    device: torch.device
    teacher: Teacher
    train: Any  # the training dataset (its samples become network inputs on the device)
    feed: Any  # where its batches come from: edgekd.distill.feed.MemoryFeed or LoaderFeed
    val: Any
    step_module: nn.Module  # _TrainStep, wrapped in DistributedDataParallel under torchrun
    autocast: Any
    channels_last: bool
    schedule: Schedule
    watch: FiniteWatch
    fingerprint: dict[str, Any]  # what a resume must match (``state.load_state``)
    progress: EpochProgress | None = None
    board: TensorBoardScalars | None = None

    @property
    def write_dir(self) -> Path | None:
        """``opts.out_dir`` on rank 0, else None: one process writes the run's files."""
        return _write_dir(self.opts, self.ctx)

    @property
    def log(self) -> Log | None:
        """``opts.log`` on rank 0, else None."""
        return self.opts.log if self.ctx.is_main else None

    def batch(
        self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch_view: EpochView | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(network inputs, labels) on the device of the batch ``x`` [B, ...] (dataset rows
        ``idx``), in the epoch's view; uint8 pixels are normalised on the device."""
        xb = model_input(x, self.train, self.device)
        if epoch_view is not None:
            xb = epoch_view.apply(xb, idx)  # the view the teacher cache holds for this epoch
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        y = mark_unlabelled(y, idx, self.opts.labelled_frames)  # the pool's rows: no label
        return xb, y.to(self.device, non_blocking=True)


def _fit(student, objective, teacher, train, val, cfg, opts, ctx) -> TrainResult:
    device = ddp.local_device(model_device(student), ctx)
    student.to(device)
    with contextlib.ExitStack() as cleanup:  # undone in reverse: hooks, SyncBatchNorm swaps, modes
        run, state = _start(student, objective, teacher, train, val, cfg, opts, ctx, device, cleanup)
        _resume(run, state)
        if opts.progress and ctx.is_main:
            run.progress = EpochProgress()
            cleanup.callback(run.progress.end_epoch)
        if run.write_dir is not None:
            run.board = TensorBoardScalars.open(run.write_dir, state.epoch)
            if run.board is not None:
                cleanup.callback(run.board.close)
        while state.epoch <= cfg.epochs and not state.records.stopped_early:
            start = time.perf_counter()
            _train_epoch(run, state)
            _close_epoch(run, state, start)
            state.next_epoch()
            _snapshot(run, state)
    done = state.records
    if done.best_state is not None:
        student.load_state_dict(done.best_state)
    student.eval()  # safe: nn.Module.eval(), inference mode
    return TrainResult(
        done.history, done.best_epoch, done.best_acc, stopped_early=done.stopped_early, steps=state.step
    )


def _start(
    student, objective, teacher, train, val, cfg, opts, ctx, device, cleanup
) -> tuple[_RunContext, RunState]:
    """Seed, check the inputs, wrap the networks and build the optimizer: a run at step 0."""
    write_dir = _write_dir(opts, ctx)
    if write_dir is not None:
        write_dir.mkdir(parents=True, exist_ok=True)
    _reproducible(cfg, device, cleanup)
    dtype = amp_dtype(cfg, device)
    shape, n = network_input_shape(train), len(train)
    channels_last = cfg.channels_last and device.type == "cuda" and len(shape) == 3
    if channels_last:
        student.to(memory_format=torch.channels_last)
    check_augmentable(shape, cfg.augment)
    _check_cache(teacher.cache, n, cfg)
    ema = ModelEMA(student, cfg.ema) if cfg.ema else None  # copied before hooks are added
    sample = (torch.from_numpy(network_arrays(train, np.arange(min(2, n))).x), train.num_classes)
    step_module = _step_module(student, objective, teacher, sample, cfg, ctx, device, cleanup)
    mix = None
    if opts.labelled_frames is not None and opts.unlabelled_share is not None:
        mix = (opts.labelled_frames, opts.unlabelled_share)
    blocks = storage_blocks(train, cfg.batch_size)
    sampler = ShuffledBatches(n, cfg.batch_size, ctx, cfg.seed, blocks=blocks, mix=mix)
    feed = make_feed(train, sampler, cfg.num_workers, device)
    cleanup.callback(feed.close)  # persistent workers stop when training ends, or fails
    state = RunState(
        model=student,
        objective=objective,
        optimizer=make_optimizer([student, objective], cfg),
        scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
        ema=ema,
        sampler=sampler,
        loss=EpochLoss(device),
    )
    run = _RunContext(
        cfg,
        opts,
        ctx,
        device,
        teacher=teacher,
        train=train,
        feed=feed,
        val=val,
        step_module=step_module,
        autocast=torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        channels_last=channels_last,
        schedule=Schedule(cfg, sampler.steps_per_epoch),
        watch=FiniteWatch(device, teacher.name),
        fingerprint=_fingerprint(cfg, objective, n, ctx, opts),
    )
    return run, state


def _write_dir(opts: FitOptions, ctx: ddp.DistContext) -> Path | None:
    return Path(opts.out_dir) if (opts.out_dir is not None and ctx.is_main) else None


def _reproducible(cfg: TrainConfig, device: torch.device, cleanup: contextlib.ExitStack) -> None:
    """Seed the global generators; deterministic kernels with ``cfg.deterministic`` (undone on exit)."""
    if cfg.deterministic:
        cleanup.callback(torch.use_deterministic_algorithms, torch.are_deterministic_algorithms_enabled())
        if device.type == "cuda":
            # cuBLAS needs a fixed workspace to be deterministic (read when CUDA initialises).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)  # dropout, projector initialisation, anything random in the model
    random.seed(cfg.seed)


def _check_cache(cache: CachedLogits | None, frames: int, cfg: TrainConfig) -> None:
    if cache is not None and (cache.frames, cache.views) != (frames, cfg.augment.view_count):
        raise ConfigError(
            f"the teacher cache holds {cache.views} view(s) of {cache.frames} frames, "
            f"the run needs {cfg.augment.view_count} of {frames}",
            hint="build the cache with this run's training data and train.augment",
        )


def _step_module(student, objective, teacher, sample, cfg, ctx, device, cleanup) -> nn.Module:
    """Student + objective as one module (DDP-wrapped under torchrun); ``sample`` = (two frames,
    class count) sizes the projectors."""
    # SyncBatchNorm in the student before its taps are hooked (a tap may name a BatchNorm layer).
    cleanup.callback(ddp.sync_batchnorm(student, cfg.sync_batchnorm, ctx, device))
    taps = FeatureTaps(student, objective.student_paths, "student")
    cleanup.callback(taps.remove)
    _build_objective(objective, student, taps, teacher, *sample)
    cleanup.callback(ddp.sync_batchnorm(objective, cfg.sync_batchnorm, ctx, device))  # OFA heads
    step_module: nn.Module = _TrainStep(student, objective, taps)
    if ctx.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    return step_module


def _fingerprint(
    cfg: TrainConfig, objective: DistillObjective, frames: int, ctx: ddp.DistContext, opts: FitOptions
) -> dict:
    """The settings a resumed run must share with the one that saved the state."""
    fingerprint = {
        "frames": frames,
        "batch_size": cfg.batch_size,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "world_size": ctx.world_size,
        "terms": repr(to_dict(objective.terms)),
    }
    if opts.labelled_frames is not None:  # only then, as for augment below
        fingerprint["unlabelled"] = [frames - opts.labelled_frames, opts.unlabelled_share]
    if cfg.augment.enabled:  # only then, so states saved before augmentation existed still resume
        fingerprint["augment"] = repr(cfg.augment.spec())
    return fingerprint


def _resume(run: _RunContext, state: RunState) -> None:
    """Load ``out_dir/train_state.pt`` into ``state`` when asked to resume and it exists."""
    if not run.opts.resume or run.opts.out_dir is None:
        return
    saved = files.load_state(Path(run.opts.out_dir), run.fingerprint)
    if saved is None:
        return
    state.load_state_dict(saved)
    if run.log:
        where = Path(run.opts.out_dir) / files.STATE_FILE
        run.log(f"resuming from {where}: epoch {state.epoch}, step {state.step}")


def _snapshot(run: _RunContext, state: RunState) -> None:
    if run.write_dir is not None:
        files.save_state(run.write_dir, run.fingerprint, state.state_dict())


def _train_epoch(run: _RunContext, state: RunState) -> None:
    """The optimizer steps of epoch ``state.epoch`` from where it stands (a resumed one mid-way)."""
    cfg, sampler = run.cfg, state.sampler
    if sampler.start_epoch():
        state.loss.reset()
    view = view_of_epoch(state.epoch, cfg.augment)
    epoch_view = EpochView(cfg.augment, sampler.frames, view) if cfg.augment.iq_enabled else None
    state.objective.progress = Progress(state.epoch, cfg.epochs)  # what every loss term sees
    run.step_module.train()
    if run.progress is not None:
        run.progress.start_epoch(state.epoch, cfg.epochs, len(sampler), sampler.next_batch)
    for b, x, y, idx in run.feed.epoch(sampler, view):
        _train_step(run, state, b, run.batch(x, y, idx, epoch_view), idx, view)
        snapshot_due = cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
        if run.watch.due(state.step) or snapshot_due:
            run.watch.check(run.ctx)  # before a snapshot: no resume state holds NaN weights
        if snapshot_due and sampler.next_batch < len(sampler):
            _snapshot(run, state)
        if run.opts.on_step is not None:
            run.opts.on_step(state.step)
        if run.progress is not None:
            run.progress.advance()
    if run.progress is not None:
        run.progress.end_epoch()


def _train_step(
    run: _RunContext,
    state: RunState,
    b: int,
    batch: tuple[torch.Tensor, torch.Tensor],
    idx: torch.Tensor,
    view: int,
) -> None:
    """One optimizer step on batch ``b`` of the epoch: ``batch`` = (inputs, labels) on the
    device of this rank's dataset rows ``idx`` [B]."""
    cfg, optimizer, scaler = run.cfg, state.optimizer, state.scaler
    for group in optimizer.param_groups:
        group["lr"] = run.schedule.lr(state.step)
    xb, yb = batch
    t_logits, t_feats = run.teacher.outputs(xb, idx, view, run.device, run.autocast)
    with run.autocast:
        loss, _parts = run.step_module(xb, yb, t_logits, t_feats)
    t_outputs = [t_logits, *t_feats.values()] if t_logits is not None else list(t_feats.values())
    run.watch.observe(state.step + 1, state.epoch, b + 1, t_outputs, loss)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.grad_clip is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if state.ema is not None:
        state.ema.update(state.model)
    state.loss.add(loss, len(idx))
    state.step += 1
    state.sampler.next_batch = b + 1


def _close_epoch(run: _RunContext, state: RunState, start: float) -> None:
    """Sum the loss over ranks, validate, track the best epoch and early stopping, write the files."""
    cfg, epoch = run.cfg, state.epoch
    run.watch.check(run.ctx)
    train_loss = state.loss.mean(run.ctx)  # syncs the device
    ddp.broadcast_buffers(state.networks, run.ctx)
    train_seconds = time.perf_counter() - start
    if not math.isfinite(train_loss):
        raise ConfigError(
            f"training diverged in epoch {epoch} (loss {train_loss})",
            hint="lower train.lr or set train.grad_clip",
        )
    model = state.eval_model
    batch = inference_batch_size(cfg.batch_size, network_input_shape(run.val))
    logits = predict_dataset(model, run.val, batch, workers=cfg.num_workers)
    acc = float((logits.argmax(dim=1).numpy() == run.val.y).mean())
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_accuracy": acc,
        "lr": run.schedule.lr(max(state.step - 1, 0)),  # the epoch's last step's
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,  # the steps alone, without validation (throughput)
    }
    improved = state.records.add(record, model, cfg.early_stop_patience)
    if epoch >= cfg.epochs:  # patience ran out with the schedule: nothing was stopped early
        state.records.stopped_early = False
    if run.log is not None:
        run.log(
            f"epoch {epoch}/{cfg.epochs}  loss {train_loss:.4f}  val_acc {acc:.4f}  "
            f"lr {record['lr']:.2e}  {record['seconds']:.1f}s{'  *best' if improved else ''}"
            f"{'  (early stop)' if state.records.stopped_early else ''}"
        )
    if run.board is not None:
        run.board.write(record)
    if run.write_dir is not None:
        files.write_metrics(run.write_dir, state.records.history)
        files.save_weights(run.write_dir / "last.pt", model, epoch, acc)
        if improved:
            files.save_weights(run.write_dir / "best.pt", model, epoch, acc)
