"""The distillation stage: the teacher's knowledge into the student, ``student.pt``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from edgekd.artifacts import commits_on_success
from edgekd.config import to_dict
from edgekd.data.artifact import open_data
from edgekd.data.batches import network_input_shape
from edgekd.data.sources import DataSpec
from edgekd.data.unlabelled_source import unlabelled_frames
from edgekd.distill.distributed import barrier, is_main_process
from edgekd.distill.reporting import teacher_comparison
from edgekd.distill.train import KDConfig, TrainConfig, distill, evaluate_model
from edgekd.models.complexity import count_params
from edgekd.models.factory import create_model
from edgekd.models.teacher import load_teacher
from edgekd.pipeline.checks import Log, _quiet
from edgekd.pipeline.teacher_stage import save_trained


@dataclasses.dataclass
class StudentSection:
    model: str = "edgekd:cnn1d_small"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DistillSection:
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


@commits_on_success
def stage_distill(
    student: StudentSection,
    section: DistillSection,
    data_path: Path,
    teacher_path: Path | None,
    out_dir: Path,
    log: Log = _quiet,
    *,
    resume: bool = False,
    progress: bool = False,
    data_section: DataSpec | None = None,
    resolve: Callable[[str], Path] = Path,
) -> Path:
    """Distil the teacher into the student: ``out_dir/student.pt`` (run files in ``distill-run/``).

    Teacher logits are cached in ``distill.kd.cache_dir`` (default ``out_dir/teacher_cache``).
    ``teacher_path`` None (``teacher.model: none``): the student trains on its labels alone,
    which ``distill.kd`` must then ask for (``loss: ce``). At the end the student's val
    accuracy is logged beside the teacher's, with a warning when a distilled student ends
    within noise of its teacher or above it (:func:`edgekd.distill.reporting.teacher_comparison`).
    Under torchrun every rank trains (DDP) and rank 0 alone writes. ``data_section`` (the
    recipe's, paths resolved with ``resolve``) brings unlabelled frames: ``data.unlabelled`` and
    what ``data.hide_labels`` hides (:mod:`edgekd.data.unlabelled_source`).
    """
    dataset = open_data(data_path)
    teacher, teacher_name = (
        # distill.train.num_threads also sets an ONNX teacher's ONNX Runtime threads.
        load_teacher(teacher_path, dataset, threads=section.train.num_threads)
        if teacher_path is not None
        else (None, None)
    )
    torch.manual_seed(section.train.seed)  # seeded initial weights, as for the teacher
    model = create_model(
        student.model, dataset.num_classes, network_input_shape(dataset)[0], **student.kwargs
    )
    val = dataset.subset("val")
    main = is_main_process()
    figures = _teacher_figures(teacher, val, main)
    s_params = count_params(model)
    log(f"distill: {_pairing(teacher_name, figures, student.model, s_params)}, {section.kd.describe()}")
    train, pool = dataset.subset("train"), None
    if data_section is not None:
        train, pool = unlabelled_frames(data_section, train, resolve)
    result = distill(
        model,
        teacher,
        train,
        val,
        section.train,
        section.kd,
        log=log,
        out_dir=out_dir / "distill-run",
        resume=resume,
        cache_dir=out_dir / "teacher_cache",
        progress=progress,
        teacher_name=f"teacher {teacher_path}" if teacher_path is not None else None,
        unlabelled=pool,
    )
    if main and teacher is not None:
        for line in teacher_comparison(
            result.best_val_accuracy,
            figures["teacher_val_accuracy"],
            len(val),
            distilled=section.kd.needs_teacher,
        ):
            log(f"distill: {line}")
    path = out_dir / "student.pt"
    if main:
        save_trained(
            path,
            model,
            student.model,
            student.kwargs,
            dataset,
            metrics=_metrics(result, figures, s_params),
            parents=[p for p in (data_path, teacher_path) if p is not None],
            config={"student": to_dict(student), "distill": to_dict(section)},
        )
    barrier()  # every rank returns once student.pt exists
    return path


def _teacher_figures(teacher: Any, val: Any, main: bool) -> dict[str, Any]:
    """The teacher's parameters and val accuracy (evaluated once, on rank 0, for the log and the
    manifest; training itself runs it only when the objective needs it); {} without a teacher."""
    if teacher is None:
        return {}
    figures = {
        "teacher_val_accuracy": evaluate_model(teacher, val) if main else float("nan"),
        "teacher_params": getattr(teacher, "num_parameters", None) or count_params(teacher),
    }
    # An ONNX teacher's count is its exported graph's (batch norms folded), not PyTorch's.
    if getattr(teacher, "parameters_note", None):
        figures["teacher_params_counted"] = teacher.parameters_note
    return figures


def _metrics(result: Any, figures: dict[str, Any], s_params: int) -> dict[str, Any]:
    """The student manifest's metrics; the teacher's figures only when there is a teacher."""
    metrics = {"val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch, **figures}
    metrics.update(params=s_params, history=result.history)
    if figures:
        t_params = figures["teacher_params"]
        metrics["compression"] = t_params / s_params if t_params else None
    return metrics


def _pairing(teacher_name: str | None, figures: dict[str, Any], student_model: str, s_params: int) -> str:
    """``teacher (params, val acc) -> student (params, Nx fewer)``, or ``no teacher -> student``."""
    if teacher_name is None:
        return f"no teacher -> {student_model} ({s_params:,} params)"
    t_params, acc = figures["teacher_params"], figures["teacher_val_accuracy"]
    counted = f" {figures['teacher_params_counted']}" if "teacher_params_counted" in figures else ""
    return (
        f"{teacher_name} ({t_params:,} params{counted}, val acc {acc:.1%}) -> "
        f"{student_model} ({s_params:,} params, {t_params / max(s_params, 1):.1f}x fewer)"
    )


__all__ = ["DistillSection", "StudentSection", "stage_distill"]
