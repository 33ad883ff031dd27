"""Training loops: supervised (teacher) and knowledge distillation (student).

Both loops draw seeded, shuffled mini-batches straight from the dataset's tensors (no
DataLoader workers), step a per-iteration LR schedule, evaluate top-1 accuracy on the
validation set after every epoch, and finish with the best epoch's weights loaded into
the model. On CUDA they run under autocast (bf16 where supported, else fp16 with loss
scaling); on CPU they run in fp32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.data.dataset import ArrayDataset
from edgekd.distill.losses import LOSSES
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError

Log = Callable[[str], None]
# (logits [B, K], batch inputs [B, ...], labels [B], dataset row indices [B]) -> scalar loss
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings shared by supervised training and distillation."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 1e-4  # applied to weights only, not to biases or norm scales
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 0  # linear warm-up from ~0 to lr, per iteration
    grad_clip: float | None = None  # max global L2 norm of the gradients
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    num_threads: int | None = None  # CPU threads for torch (None: torch's default)

    def validate(self) -> None:
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
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"train.num_threads must be >= 1 or null, got {self.num_threads}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(
                    f"train.device {self.device!r} is not a device", hint="use auto, cpu, cuda or cuda:N"
                ) from None


@dataclasses.dataclass
class KDConfig:
    """Distillation objective: a loss from ``LOSSES`` and its temperature and weight."""

    loss: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft-target term; 1 - alpha weighs the labels
    # The loop applies no augmentation and the teacher is frozen in eval mode, so its
    # logits per frame never change: compute them once instead of every epoch.
    cache_teacher: bool = True

    def validate(self) -> None:
        LOSSES.get(self.loss)  # unknown name -> ConfigError with "did you mean"
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill.alpha must be in [0, 1], got {self.alpha}")


@dataclasses.dataclass
class TrainResult:
    """Per-epoch records (epoch, train_loss, val_accuracy, lr, seconds) and the best epoch."""

    history: list[dict]
    best_epoch: int
    best_val_accuracy: float


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; an unavailable CUDA is a clear error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailable(
            f"train.device {spec!r} asked for, but CUDA is not available here",
            hint="set train.device: auto or cpu",
        )
    return device


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def check_fits(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, what: str = "model") -> None:
    """Raise ShapeError unless ``model`` maps [B, *input_shape] to [B, num_classes].

    Checks the first convolution's input channels, then runs one tiny forward pass.
    """
    first_conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first_conv is not None and input_shape and input_shape[0] != first_conv.in_channels:
        raise ShapeError(
            f"dataset frames are {_shape_text(input_shape)} but the {what} expects "
            f"{first_conv.in_channels} input channels ({first_conv.in_channels}xL)",
            hint="build the model with in_channels matching the data, or use matching data",
        )
    was_training = model.training
    model.eval()  # a train-mode forward would update BatchNorm statistics
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *input_shape), device=_model_device(model)))
    except RuntimeError as exc:
        raise ShapeError(
            f"the {what} cannot take dataset frames of shape {_shape_text(input_shape)}: "
            f"{str(exc).splitlines()[0][:160]}",
            hint="use data of the shape the model was built for",
        ) from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ShapeError(
            f"the {what} outputs {_shape_text(tuple(out.shape[1:]))} per frame but the dataset has "
            f"{num_classes} classes",
            hint=f"build the model with num_classes={num_classes}",
        )


def _batches(n: int, batch_size: int, order: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Index tensors of at most ``batch_size`` rows, in ``order`` (default 0..n-1)."""
    order = torch.arange(n) if order is None else order
    yield from torch.split(order, batch_size)


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA where supported, else fp16 (with a GradScaler); off on CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits [N, K] (fp32, on CPU) of ``model`` in eval mode for inputs ``x`` [N, ...]."""
    x = torch.as_tensor(x)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        # fp32 even on CUDA: accuracy numbers must not depend on an autocast dtype.
        for idx in _batches(len(x), batch_size):
            chunks.append(model(x[idx].to(device, non_blocking=True)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate_model(model: nn.Module, dataset: ArrayDataset, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (on its current device) over ``dataset``.

    Raises ShapeError when the dataset's frames or class count do not fit the model.
    """
    if len(dataset) == 0:
        raise InputFileError("cannot evaluate on an empty dataset", hint="check the split holds frames")
    check_fits(model, dataset.input_shape, dataset.num_classes)
    logits = predict_logits(model, dataset.x, batch_size)
    return float((logits.argmax(dim=1).numpy() == dataset.y).mean())


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # Decaying biases and BatchNorm scales only shrinks them towards zero and hurts
    # small students; decay the weight matrices and kernels alone.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: TrainConfig) -> float:
    """Learning rate for iteration ``step`` (0-based): linear warm-up, then cosine or flat."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * progress))


def _check_datasets(model: nn.Module, train: ArrayDataset, val: ArrayDataset, what: str) -> None:
    if len(train) < 2 or len(val) == 0:
        raise InputFileError(
            f"training needs >= 2 train frames and >= 1 val frame, got {len(train)} and {len(val)}",
            hint="check the dataset's train/val split",
        )
    for name, data in (("train", train), ("val", val)):
        if not np.isfinite(data.x).all():
            raise InputFileError(
                f"the {name} frames hold NaN or infinite values", hint="clean or regenerate the dataset"
            )
    if train.input_shape != val.input_shape or train.class_names != val.class_names:
        raise ShapeError(
            f"train frames {_shape_text(train.input_shape)} with {train.num_classes} classes do not match "
            f"val frames {_shape_text(val.input_shape)} with {val.num_classes} classes",
            hint="take both splits from one dataset",
        )
    check_fits(model, train.input_shape, train.num_classes, what)


def _fit(
    model: nn.Module,
    train: ArrayDataset,
    val: ArrayDataset,
    cfg: TrainConfig,
    objective: Objective,
    log: Log | None,
) -> TrainResult:
    """The loop shared by both trainers; ``model`` is already on its device."""
    device = _model_device(model)
    x_all, y_all = torch.from_numpy(train.x), torch.from_numpy(train.y)
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps, warmup_steps = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    optimizer = _make_optimizer(model, cfg)
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout and any other randomness inside the model

    history: list[dict] = []
    best_acc, best_epoch, best_state = -1.0, 0, None
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        loss_sum, seen = torch.zeros((), device=device), 0
        for idx in _batches(n, cfg.batch_size, torch.from_numpy(rng.permutation(n))):
            if len(idx) < 2:  # a lone trailing frame breaks train-mode BatchNorm
                continue
            lr = lr_at(step, total_steps, warmup_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb = x_all[idx].to(device, non_blocking=True)
            yb = y_all[idx].to(device, non_blocking=True)
            with _autocast(device):
                loss = objective(model(xb), xb, yb, idx)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().float() * len(idx)
            seen += len(idx)
            step += 1
        train_loss = float(loss_sum) / max(1, seen)
        if not math.isfinite(train_loss):
            raise ConfigError(
                f"training diverged in epoch {epoch} (loss {train_loss})",
                hint="lower train.lr or set train.grad_clip",
            )
        acc = evaluate_model(model, val, batch_size=max(512, cfg.batch_size))
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_accuracy": acc,
            "lr": lr,
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        improved = acc > best_acc
        if improved:
            best_acc, best_epoch = acc, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if log is not None:
            log(
                f"epoch {epoch}/{cfg.epochs}  loss {train_loss:.4f}  val_acc {acc:.4f}  "
                f"lr {lr:.2e}  {record['seconds']:.1f}s{'  *best' if improved else ''}"
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(history=history, best_epoch=best_epoch, best_val_accuracy=best_acc)


@contextlib.contextmanager
def _cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` torch CPU threads for the duration of a run, then restore."""
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_supervised(
    model: nn.Module, train: ArrayDataset, val: ArrayDataset, cfg: TrainConfig, log: Log | None = None
) -> TrainResult:
    """Train ``model`` with cross-entropy on the labels (e.g. a teacher).

    ``model`` is moved to ``cfg.device`` and ends there, in eval mode, holding the
    weights of its best validation epoch.
    """
    cfg.validate()
    model.to(resolve_device(cfg.device))
    _check_datasets(model, train, val, "model")

    def objective(
        logits: torch.Tensor, _x: torch.Tensor, y: torch.Tensor, _idx: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y)

    with _cpu_threads(cfg.num_threads):
        return _fit(model, train, val, cfg, objective, log)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train: ArrayDataset,
    val: ArrayDataset,
    cfg: TrainConfig,
    kd: KDConfig,
    log: Log | None = None,
) -> TrainResult:
    """Train ``student`` to match a frozen ``teacher`` with the loss ``kd.loss``.

    The teacher runs in eval mode under no_grad (its logits computed once when
    ``kd.cache_teacher``, else per batch). Both networks are moved to ``cfg.device``;
    the student ends there, in eval mode, with its best validation epoch's weights.
    """
    cfg.validate()
    kd.validate()
    loss_fn = LOSSES.get(kd.loss)
    device = resolve_device(cfg.device)
    student.to(device)
    teacher.to(device).eval()
    _check_datasets(student, train, val, "student")
    check_fits(teacher, train.input_shape, train.num_classes, "teacher")

    with _cpu_threads(cfg.num_threads):
        cached = predict_logits(teacher, train.x, max(512, cfg.batch_size)) if kd.cache_teacher else None

        def objective(
            logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
        ) -> torch.Tensor:
            if cached is not None:
                t_logits = cached[idx].to(logits.device, non_blocking=True)
            else:
                with torch.no_grad():
                    t_logits = teacher(x)
            return loss_fn(logits, t_logits, y, temperature=kd.temperature, alpha=kd.alpha)

        if log is not None:
            log(f"distilling with loss {kd.loss!r} (T={kd.temperature}, alpha={kd.alpha}) on {device}")
        return _fit(student, train, val, cfg, objective, log)
