"""Distillation of the caller's own objects: modules, datasets, names or files, in one process.

The same training core as the recipe path (:func:`edgekd.distill.train.distill`), fed with the
caller's datasets wrapped as edgekd datasets (:mod:`edgekd.data.torch_dataset`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.api import inputs
from edgekd.api.results import DistillResult
from edgekd.errors import ConfigError


def _configs(explicit: dict[str, Any], splits: inputs.Splits, train_options: dict, kd_options: dict) -> tuple:
    """(TrainConfig, KDConfig) from the explicit arguments over the ``*_options`` dicts."""
    from edgekd.config import from_dict
    from edgekd.distill.config import KDConfig, TrainConfig

    kd = dict(kd_options)
    kd.update({k: explicit[k] for k in ("loss", "temperature", "alpha") if explicit[k] is not None})
    train = dict(train_options)
    for key, value in splits.loader.items():  # a DataLoader's settings, unless the arguments say otherwise
        train.setdefault(key, value)
    keys = ("epochs", "batch_size", "lr", "device", "seed")
    train.update({k: explicit[k] for k in keys if explicit[k] is not None})
    return from_dict(TrainConfig, train, "train_options"), from_dict(KDConfig, kd, "kd_options")


def _student(
    student: Any, splits: inputs.Splits, kwargs: dict[str, Any], seed: int
) -> tuple[nn.Module, str | None]:
    """The student module and the registry name that rebuilds it (None for the caller's module)."""
    if isinstance(student, nn.Module):
        return student, None
    if not isinstance(student, (str, Path)):
        raise ConfigError(
            f"student= is a {type(student).__name__}",
            hint="pass an nn.Module, a model name (edgekd:cnn1d_small, timm:...) or a checkpoint",
        )
    name = str(student)
    if inputs.looks_like_file(name):
        model, meta = inputs.load_model_file(name, "student checkpoint")
        if meta is None:
            raise ConfigError(f"student {name} is an ONNX file", hint="an ONNX model cannot be trained")
        return model, meta.model_name
    torch.manual_seed(seed)  # seeded initial weights
    return inputs.build_named(name, splits.train, kwargs), name


def _teacher(
    teacher: Any,
    splits: inputs.Splits,
    cfg: Any,
    epochs: int | None,
    out: Path | None,
    log: Any,
    progress: bool,
) -> tuple[Any, Path | None]:
    """The teacher (an nn.Module or an ONNX teacher) and its file; a name is trained here first;
    None (the student trains alone) stays None."""
    if teacher is None or isinstance(teacher, nn.Module):
        return teacher, None
    if not isinstance(teacher, (str, Path)):
        raise ConfigError(
            f"teacher= is a {type(teacher).__name__}",
            hint="pass an nn.Module, a checkpoint (.pt), an ONNX file or a model name",
        )
    name = str(teacher)
    if inputs.looks_like_file(name):
        return inputs.load_model_file(name, "teacher")[0], Path(name)
    import dataclasses

    from edgekd.distill.train import train_supervised

    torch.manual_seed(cfg.seed)
    model = inputs.build_named(name, splits.train, {})
    teacher_cfg = dataclasses.replace(cfg, epochs=epochs or cfg.epochs)
    log(f"teacher: training {name} for {teacher_cfg.epochs} epochs")
    train_supervised(
        model,
        splits.train,
        splits.val,
        teacher_cfg,
        log=log,
        out_dir=out / "teacher-run" if out else None,
        progress=progress,
    )
    path = None
    if out is not None:
        from edgekd.pipeline.teacher_stage import save_trained

        path = out / "teacher.pt"
        save_trained(path, model, name, {}, splits.train, metrics={}, parents=_parents(splits))
    return model, path


def _parents(splits: inputs.Splits) -> list[Path]:
    return [splits.path] if splits.path is not None else []


def _save_student(
    path: Path, model: nn.Module, name: str | None, kwargs: dict, splits: inputs.Splits, metrics: dict
) -> None:
    """``student.pt``: an edgekd checkpoint when a name rebuilds the student, else its state_dict."""
    if name is not None:
        from edgekd.pipeline.teacher_stage import save_trained

        save_trained(path, model, name, kwargs, splits.train, metrics=metrics, parents=_parents(splits))
        return
    from edgekd.artifacts import atomic_path, write_manifest

    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    write_manifest(path, "state-dict", parents=_parents(splits), metrics=metrics)


def distill_objects(
    teacher: Any,
    student: Any,
    splits: inputs.Splits,
    explicit: dict[str, Any],
    *,
    unlabelled: Any = None,
    train_options: dict,
    kd_options: dict,
    teacher_epochs: int | None,
    student_kwargs: dict,
    out: Path | None,
    resume: bool,
    log: Any,
    progress: bool,
) -> DistillResult:
    """See :func:`edgekd.api.distill_api.distill` (no ``config``)."""
    from edgekd.artifacts import ensure_dir
    from edgekd.distill.train import distill as train_distill
    from edgekd.models.complexity import count_params

    if student is None:
        raise ConfigError("distill needs teacher= and student=", hint="or pass config= (a recipe)")
    train_cfg, kd = _configs(explicit, splits, train_options, kd_options)
    if teacher is None and kd.needs_teacher:
        raise ConfigError(
            f"distill needs teacher= for the objective {kd.describe()}",
            hint="pass a teacher, loss='ce' to train the student alone on its labels, or config= (a recipe)",
        )
    if out is not None:
        ensure_dir(out)  # removed again if the call fails before writing into it
    model, name = _student(student, splits, student_kwargs, train_cfg.seed)
    teacher_model, teacher_path = _teacher(teacher, splits, train_cfg, teacher_epochs, out, log, progress)
    result = train_distill(
        model,
        teacher_model,
        splits.train,
        splits.val,
        train_cfg,
        kd,
        log=log,
        out_dir=out / "distill-run" if out else None,
        resume=resume,
        cache_dir=out / "teacher_cache" if out else None,
        progress=progress,
        unlabelled=unlabelled,
    )
    teacher_acc = _report_teacher(teacher_model, splits.val, result.best_val_accuracy, kd, log)
    metrics = {
        "val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
        "teacher_val_accuracy": teacher_acc,
        "params": count_params(model),
        "history": result.history,
    }
    if teacher_model is None:
        del metrics["teacher_val_accuracy"]  # no teacher: no figure (a NaN is no JSON)
    checkpoint = None
    if out is not None:
        checkpoint = out / "student.pt"
        _save_student(checkpoint, model, name, student_kwargs, splits, metrics)
    return DistillResult(
        student=model,
        checkpoint=checkpoint,
        teacher=teacher_model,
        teacher_checkpoint=teacher_path,
        val_accuracy=result.best_val_accuracy,
        best_epoch=result.best_epoch,
        teacher_val_accuracy=teacher_acc,
        history=result.history,
        out_dir=out,
        data=splits.path,
    )


def _report_teacher(teacher: Any, val: Any, student_acc: float, kd: Any, log: Any) -> float:
    """The teacher's val accuracy (NaN without a teacher), logged beside the student's with a
    warning when a distilled student ends within noise of it or above it."""
    if teacher is None:
        return float("nan")
    from edgekd.distill.reporting import teacher_comparison
    from edgekd.distill.train import evaluate_model

    acc = evaluate_model(teacher, val)
    for line in teacher_comparison(student_acc, acc, len(val), distilled=kd.needs_teacher):
        log(f"distill: {line}")
    return acc


__all__ = ["distill_objects"]
