"""Shared checks and inference helpers: devices, shape fit, predictions, accuracy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.data.batches import in_memory, iter_batches, model_input, network_input_shape
from edgekd.data.mapstyle import MapDataset
from edgekd.errors import InputFileError, RuntimeUnavailable, ShapeError


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


def model_device(model: Any) -> torch.device:
    """Device of the first parameter; CPU for parameterless modules and black-box callables."""
    params = getattr(model, "parameters", None)
    first = next(params(), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the duration (restored afterwards); a no-op for non-Module callables."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()  # safe: nn.Module.eval(), inference mode
    try:
        yield
    finally:
        model.train(was_training)


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def check_fits(model: Any, input_shape: tuple[int, ...], num_classes: int, what: str = "model") -> None:
    """Raise ShapeError unless ``model`` maps [B, *input_shape] to [B, num_classes].

    Checks the first convolution's input channels, then runs one tiny forward pass.
    """
    modules = model.modules() if isinstance(model, nn.Module) else ()
    first_conv = next((m for m in modules if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first_conv is not None and input_shape and input_shape[0] != first_conv.in_channels:
        raise ShapeError(
            f"dataset frames are {shape_text(input_shape)} but the {what} expects "
            f"{first_conv.in_channels} input channels ({first_conv.in_channels}xL)",
            hint="build the model with in_channels matching the data, or use matching data",
        )
    try:
        # eval: a train-mode forward would update BatchNorm statistics
        with eval_mode(model), torch.no_grad():
            out = torch.as_tensor(model(torch.zeros((2, *input_shape), device=model_device(model))))
    except RuntimeError as exc:
        raise ShapeError(
            f"the {what} cannot take dataset frames of shape {shape_text(input_shape)}: "
            f"{str(exc).splitlines()[0][:160]}",
            hint="use data of the shape the model was built for",
        ) from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ShapeError(
            f"the {what} outputs {shape_text(tuple(out.shape[1:]))} per frame but the dataset has "
            f"{num_classes} classes",
            hint=f"build the model with num_classes={num_classes}",
        )


#: Input elements per inference chunk: 512 IQ frames of 2x128, or 11 images of 3x384x384.
_INFERENCE_ELEMENTS = 512 * 2 * 128 * 4


def inference_batch_size(train_batch: int, sample_shape: tuple[int, ...]) -> int:
    """Chunk size for no-grad passes (validation, teacher caching): large for small frames, where
    per-call overhead dominates, but never above the training batch for large inputs, where a
    fixed 512 would hold gigabytes of activations (a ConvNeXtV2-Large at 384 px)."""
    per_sample = max(1, int(np.prod(sample_shape)))
    return max(train_batch, min(512, _INFERENCE_ELEMENTS // per_sample))


@torch.no_grad()
def predict_logits(model: Any, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits [N, K] (fp32, on CPU) of ``model`` in eval mode for inputs ``x`` [N, ...]."""
    x = torch.as_tensor(x)
    device = model_device(model)
    chunks = []
    with eval_mode(model):
        # fp32 even on CUDA: accuracy numbers must not depend on an autocast dtype.
        for idx in torch.split(torch.arange(len(x)), batch_size):
            chunks.append(torch.as_tensor(model(x[idx].to(device, non_blocking=True))).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


@torch.no_grad()
def predict_dataset(
    model: Any, dataset: Any, batch_size: int | None = None, workers: int | str | None = "auto"
) -> torch.Tensor:
    """Logits [N, K] (fp32, on CPU) of ``model`` in eval mode for every sample of ``dataset``.

    ``dataset``: an :class:`~edgekd.data.dataset.ArrayDataset` or a map-style dataset, streamed
    in order by :func:`edgekd.data.batches.iter_batches` (in-memory data sliced in this process,
    lazy data read by ``workers`` DataLoader workers), so only the logits grow with its size.
    Raw uint8 image pixels are normalised on the model's device. ``batch_size`` None: sized to
    the frames (:func:`inference_batch_size`).
    """
    device = model_device(model)
    batch = batch_size or inference_batch_size(1, network_input_shape(dataset))
    chunks = []
    with eval_mode(model):
        for x, _, _ in iter_batches(dataset, batch, workers=workers, pin_memory=device.type == "cuda"):
            # fp32 even on CUDA: accuracy numbers must not depend on an autocast dtype.
            chunks.append(torch.as_tensor(model(model_input(x, dataset, device))).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate_model(
    model: nn.Module, dataset: Any, batch_size: int | None = None, *, workers: int | str | None = "auto"
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (on its current device) over ``dataset`` (an
    ArrayDataset or a map-style dataset, streamed: see :func:`predict_dataset`).

    ``batch_size`` None: sized to the frames (:func:`inference_batch_size`); ``workers``: as
    for :func:`predict_dataset`.
    Raises ShapeError when the dataset's frames or class count do not fit the model.
    """
    if len(dataset) == 0:
        raise InputFileError("cannot evaluate on an empty dataset", hint="check the split holds frames")
    check_dataset_fits(model, dataset)
    logits = predict_dataset(model, dataset, batch_size, workers)
    return float((logits.argmax(dim=1).numpy() == dataset.y).mean())


def check_dataset_fits(model: Any, dataset: Any, what: str = "model") -> None:
    """:func:`check_fits` for the frames of ``dataset`` as the network takes them (a raw uint8
    [1, S, S] image dataset is checked as [3, S, S]: :func:`edgekd.data.batches.network_input_shape`)."""
    check_fits(model, network_input_shape(dataset), dataset.num_classes, what)


def check_datasets(model: nn.Module, train: Any, val: Any, what: str) -> None:
    """Refuse splits too small to train on, non-finite in-memory frames, train and val frames or
    classes that differ, and a ``model`` they do not fit (ArrayDatasets or map-style datasets;
    a lazy dataset's frames are checked as they are read)."""
    if len(train) < 2 or len(val) == 0:
        raise InputFileError(
            f"training needs >= 2 train frames and >= 1 val frame, got {len(train)} and {len(val)}",
            hint="check the dataset's train/val split",
        )
    for name, data in (("train", train), ("val", val)):
        if in_memory(data) and not _finite(data):
            raise InputFileError(
                f"the {name} frames hold NaN or infinite values", hint="clean or regenerate the dataset"
            )
    train_shape, val_shape = network_input_shape(train), network_input_shape(val)
    if train_shape != val_shape or train.class_names != val.class_names:
        raise ShapeError(
            f"train frames {shape_text(train_shape)} with {train.num_classes} classes do not match "
            f"val frames {shape_text(val_shape)} with {val.num_classes} classes",
            hint="take both splits from one dataset",
        )
    check_fits(model, train_shape, train.num_classes, what)


def _finite(data: Any) -> bool:
    """Whether every frame of an in-memory dataset is finite (a block at a time: no whole copy)."""
    if isinstance(data, MapDataset):
        return all(bool(np.isfinite(x.numpy()).all()) for x, _, _ in iter_batches(data, 4096, workers=0))
    return bool(np.isfinite(data.x).all())


@contextlib.contextmanager
def cpu_threads(num_threads: int | None, *, deterministic: bool = False) -> Iterator[None]:
    """Use ``num_threads`` torch CPU threads for the duration of a run, then restore.

    ``num_threads`` None: edgekd's default count, fitted before every optimizer step (at most
    once a second) to the cores other processes leave free
    (:class:`edgekd.runtime.threads.ThreadGovernor`), unless the user fixed the count with
    ``OMP_NUM_THREADS`` or ``deterministic`` asks for results that do not depend on the
    machine's load (a float sum's order follows the thread count).
    """
    from edgekd.runtime.threads import torch_thread_governor

    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    governor = None if num_threads or deterministic else torch_thread_governor(torch)
    hook = None
    if governor is not None:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        def look(*_: Any) -> None:  # a pre-step hook returns None: the step's arguments stay
            governor.tick()

        hook = register_optimizer_step_pre_hook(look)
    try:
        yield
    finally:
        if hook is not None:
            hook.remove()
        torch.set_num_threads(previous)
