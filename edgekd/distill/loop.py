"""The training loop shared by supervised training and distillation.

Seeded shuffled mini-batches straight from the dataset's tensors (no DataLoader workers),
a per-iteration LR schedule, optional EMA, AMP and channels_last on CUDA, validation after
every epoch, best/last weights and an exact-resume state in the output folder, early
stopping, and DistributedDataParallel under torchrun. Finishes with the best epoch's
weights loaded into the student.

With ``train.augment`` the student's batch is the epoch's view of each frame
(``edgekd.distill.augment``); teacher logits come from the cache of that same view
(``edgekd.distill.teacher_cache``) or from the teacher run on the batch the student sees.
"""

from __future__ import annotations

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
from edgekd.data.dataset import ArrayDataset
from edgekd.distill import distributed as ddp
from edgekd.distill import state as run_state
from edgekd.distill.augment import EpochView, check_augmentable, view_of_epoch
from edgekd.distill.checks import inference_batch_size, model_device, predict_logits
from edgekd.distill.config import TrainConfig, TrainResult
from edgekd.distill.features import FeatureTaps
from edgekd.distill.finite import FiniteWatch
from edgekd.distill.objective import DistillObjective
from edgekd.distill.reporting import EpochProgress, TensorBoardScalars
from edgekd.distill.teacher_cache import CachedLogits
from edgekd.errors import ConfigError

Log = Callable[[str], None]
StepCallback = Callable[[int], None]  # called with the global step count after each optimizer step


def lr_at(
    step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig, steps_per_epoch: int | None = None
) -> float:
    """Learning rate for iteration ``step`` (0-based): linear warm-up, then cosine, step or flat.

    ``step`` decays multiply by ``cfg.step_gamma`` every ``cfg.step_size`` epochs after the warm-up.
    """
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        per_epoch = steps_per_epoch or max(1, total_steps // cfg.epochs)
        step_size = cfg.step_size or max(1, cfg.epochs // 3)
        return cfg.lr * cfg.step_gamma ** ((step - warmup_steps) // (per_epoch * step_size))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * progress))


def _param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    # Decaying biases and BatchNorm scales only shrinks them towards zero and hurts
    # small students; decay the weight matrices and kernels alone.
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(modules: list[nn.Module], cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(modules, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


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

    def forward(self, x, y, teacher_logits, teacher_feats, epoch: int):
        logits = self.student(x)
        feats = dict(zip(self.taps.paths, self.taps.collect(), strict=True)) if self.taps.paths else {}
        return self.objective(logits, teacher_logits, y, feats, teacher_feats, epoch)


@dataclasses.dataclass
class FitOptions:
    """Run-level options that are not part of the recipe's train section."""

    out_dir: Path | None = None  # metrics, best/last weights, resume state (rank 0 writes)
    resume: bool = False  # continue from out_dir/train_state.pt when it exists
    log: Log | None = None
    on_step: StepCallback | None = None
    progress: bool = False  # a rich progress bar per epoch on stderr (rank 0; the caller checks for a TTY)


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
    train: ArrayDataset,
    val: ArrayDataset,
    cfg: TrainConfig,
    opts: FitOptions,
) -> TrainResult:
    """Train ``student`` (already on its device) on ``objective``; see the module docstring.

    What training writes (metrics, best/last weights, the resume state) is durable: a command
    that fails later keeps it, so ``--resume`` can continue the run.
    """
    ctx = ddp.setup_distributed(model_device(student))
    try:
        with durable():
            return _fit(student, objective, teacher, train, val, cfg, opts, ctx)
    finally:
        ddp.teardown(ctx)


def _fit(student, objective, teacher, train, val, cfg, opts, ctx) -> TrainResult:
    device = ddp.local_device(model_device(student), ctx)
    student.to(device)
    log = opts.log if ctx.is_main else None
    write_dir = Path(opts.out_dir) if (opts.out_dir is not None and ctx.is_main) else None
    if write_dir is not None:
        write_dir.mkdir(parents=True, exist_ok=True)
    previous_det = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        if device.type == "cuda":
            # cuBLAS needs a fixed workspace to be deterministic (read when CUDA initialises).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)  # dropout, projector initialisation, anything random in the model
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dtype = amp_dtype(cfg, device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    channels_last = cfg.channels_last and device.type == "cuda" and train.x.ndim == 4
    if channels_last:
        student.to(memory_format=torch.channels_last)

    x_all, y_all = torch.from_numpy(train.x), torch.from_numpy(train.y)
    n = len(train)
    check_augmentable(train.input_shape, cfg.augment)
    cache = teacher.cache
    if cache is not None and (cache.frames, cache.views) != (n, cfg.augment.view_count):
        raise ConfigError(
            f"the teacher cache holds {cache.views} view(s) of {cache.frames} frames, "
            f"the run needs {cfg.augment.view_count} of {n}",
            hint="build the cache with this run's training data and train.augment",
        )
    ema = run_state.ModelEMA(student, cfg.ema) if cfg.ema else None  # copied before hooks are added
    # SyncBatchNorm in the student before its taps are hooked (a tap may name a BatchNorm layer).
    restore_student = ddp.sync_batchnorm(student, cfg.sync_batchnorm, ctx, device)
    restore_objective: Callable[[], None] = lambda: None  # noqa: E731
    taps: FeatureTaps | None = None
    progress: EpochProgress | None = None
    board: TensorBoardScalars | None = None
    watch = FiniteWatch(device, teacher.name)
    try:
        taps = FeatureTaps(student, objective.student_paths, "student")
        _build_objective(objective, student, taps, teacher, x_all[:2], train.num_classes)
        restore_objective = ddp.sync_batchnorm(objective, cfg.sync_batchnorm, ctx, device)  # OFA heads
        step_module: nn.Module = _TrainStep(student, objective, taps)
        if ctx.enabled:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None
            )
        optimizer = _make_optimizer([student, objective], cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        steps_per_epoch = len(ddp.global_batches(torch.arange(n), cfg.batch_size, ctx.world_size))
        total_steps, warmup_steps = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
        fingerprint = {
            "frames": n,
            "batch_size": cfg.batch_size,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "world_size": ctx.world_size,
            "terms": repr(to_dict(objective.terms)),
        }
        if cfg.augment.enabled:  # only then, so states saved before augmentation existed still resume
            fingerprint["augment"] = repr(to_dict(cfg.augment))

        # Run-level progress; all of it goes into (and comes back from) the resume state.
        epoch, next_batch, step, order = 1, 0, 0, None
        loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0
        stopped_early = False
        history: list[dict] = []
        best_acc, best_epoch, best_state, bad_epochs = -1.0, 0, None, 0
        if opts.resume and opts.out_dir is not None:
            saved = run_state.load_state(Path(opts.out_dir), fingerprint)
            if saved is not None:
                student.load_state_dict(saved["model"])
                objective.load_state_dict(saved["objective"])
                optimizer.load_state_dict(saved["optimizer"])
                scaler.load_state_dict(saved["scaler"])
                if ema is not None and saved["ema"] is not None:
                    ema.module.load_state_dict(saved["ema"])
                run_state.restore_rng_states(saved["rng"], rng)
                epoch, next_batch, step, order = (
                    saved["epoch"],
                    saved["next_batch"],
                    saved["step"],
                    saved["order"],
                )
                loss_sum, seen = saved["loss_sum"].to(device), saved["seen"]
                history, best_acc, best_epoch = saved["history"], saved["best_acc"], saved["best_epoch"]
                best_state, bad_epochs = saved["best_state"], saved["bad_epochs"]
                stopped_early = saved["stopped_early"]
                if log:
                    log(f"resuming from {opts.out_dir}/{run_state.STATE_FILE}: epoch {epoch}, step {step}")

        def snapshot() -> None:
            if write_dir is None:
                return
            run_state.save_state(
                write_dir,
                {
                    "fingerprint": fingerprint,
                    "model": student.state_dict(),
                    "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "rng": run_state.rng_states(rng),
                    "epoch": epoch,
                    "next_batch": next_batch,
                    "step": step,
                    "order": order,
                    "loss_sum": loss_sum.cpu(),
                    "seen": seen,
                    "history": history,
                    "best_acc": best_acc,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                },
            )

        lr = lr_at(step, total_steps, warmup_steps, cfg, steps_per_epoch)
        progress = EpochProgress() if (opts.progress and ctx.is_main) else None
        board = TensorBoardScalars.open(write_dir, epoch) if write_dir is not None else None
        while epoch <= cfg.epochs and not stopped_early:
            start = time.perf_counter()
            if order is None:
                order = torch.from_numpy(rng.permutation(n))
                next_batch, loss_sum, seen = 0, torch.zeros((), dtype=torch.float64, device=device), 0
            batches = ddp.global_batches(order, cfg.batch_size, ctx.world_size)
            view = view_of_epoch(epoch, cfg.augment)
            epoch_view = EpochView(cfg.augment, n, view) if cfg.augment.enabled else None
            step_module.train()
            if progress is not None:
                progress.start_epoch(epoch, cfg.epochs, len(batches), next_batch)
            for b in range(next_batch, len(batches)):
                idx = ddp.shard(batches[b], ctx)
                lr = lr_at(step, total_steps, warmup_steps, cfg, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                xb = x_all[idx].to(device, non_blocking=True)
                if epoch_view is not None:
                    xb = epoch_view.apply(xb, idx)  # the view the teacher cache holds for this epoch
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = y_all[idx].to(device, non_blocking=True)
                t_logits, t_feats = teacher.outputs(xb, idx, view, device, autocast)
                with autocast:
                    loss, _parts = step_module(xb, yb, t_logits, t_feats, epoch)
                t_outputs = [t_logits, *t_feats.values()] if t_logits is not None else list(t_feats.values())
                watch.observe(step + 1, epoch, b + 1, t_outputs, loss)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(
                        [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip
                    )
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(student)
                loss_sum = loss_sum + loss.detach().to(loss_sum.dtype) * len(idx)  # no host sync per step
                seen += len(idx)
                step += 1
                next_batch = b + 1
                snapshot_due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
                if watch.due(step) or snapshot_due:
                    watch.check(ctx)  # before a snapshot: no resume state holds NaN weights
                if snapshot_due and next_batch < len(batches):
                    snapshot()
                if opts.on_step is not None:
                    opts.on_step(step)
                if progress is not None:
                    progress.advance()
            if progress is not None:
                progress.end_epoch()
            watch.check(ctx)
            seen_t = torch.tensor(float(seen), dtype=torch.float64, device=device)
            totals = ddp.all_reduce_sum(torch.stack([loss_sum, seen_t]), ctx).cpu()  # syncs the device
            ddp.broadcast_buffers([student, objective] + ([ema.module] if ema is not None else []), ctx)
            train_seconds = time.perf_counter() - start
            train_loss = float(totals[0]) / max(1.0, float(totals[1]))
            if not math.isfinite(train_loss):
                raise ConfigError(
                    f"training diverged in epoch {epoch} (loss {train_loss})",
                    hint="lower train.lr or set train.grad_clip",
                )
            eval_model = ema.module if ema is not None else student
            logits = predict_logits(eval_model, val.x, inference_batch_size(cfg.batch_size, val.x.shape[1:]))
            acc = float((logits.argmax(dim=1).numpy() == val.y).mean())
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_accuracy": acc,
                "lr": lr,
                "seconds": time.perf_counter() - start,
                "train_seconds": train_seconds,  # the steps alone, without validation (throughput)
            }
            history.append(record)
            improved = acc > best_acc
            if improved:
                best_acc, best_epoch, bad_epochs = acc, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in eval_model.state_dict().items()}
            else:
                bad_epochs += 1
            stopped_early = cfg.early_stop_patience is not None and bad_epochs >= cfg.early_stop_patience
            if log is not None:
                log(
                    f"epoch {epoch}/{cfg.epochs}  loss {train_loss:.4f}  val_acc {acc:.4f}  "
                    f"lr {lr:.2e}  {record['seconds']:.1f}s{'  *best' if improved else ''}"
                    f"{'  (early stop)' if stopped_early else ''}"
                )
            if board is not None:
                board.write(record)
            if write_dir is not None:
                run_state.write_metrics(write_dir, history)
                run_state.save_weights(write_dir / "last.pt", eval_model, epoch, acc)
                if improved:
                    run_state.save_weights(write_dir / "best.pt", eval_model, epoch, acc)
            epoch, order, next_batch = epoch + 1, None, 0
            snapshot()
    finally:
        if taps is not None:
            taps.remove()
        restore_objective()
        restore_student()
        if progress is not None:
            progress.end_epoch()
        if board is not None:
            board.close()
        if cfg.deterministic:
            torch.use_deterministic_algorithms(previous_det)
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()  # safe: nn.Module.eval(), inference mode
    return TrainResult(history, best_epoch, best_acc, stopped_early=stopped_early, steps=step)
