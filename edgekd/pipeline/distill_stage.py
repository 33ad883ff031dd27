"""The distillation stage: the teacher's knowledge into the student, ``student.pt``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from edgekd.artifacts import commits_on_success
from edgekd.config import to_dict
from edgekd.data.artifact import open_data
from edgekd.data.batches import network_input_shape
from edgekd.distill.distributed import barrier, is_main_process
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
    teacher_path: Path,
    out_dir: Path,
    log: Log = _quiet,
    *,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Distil the teacher into the student: ``out_dir/student.pt`` (run files in ``distill-run/``).

    Teacher logits are cached in ``distill.kd.cache_dir`` (default ``out_dir/teacher_cache``).
    Under torchrun every rank trains (DDP) and rank 0 alone writes.
    """
    dataset = open_data(data_path)
    teacher, teacher_name = load_teacher(teacher_path, dataset)
    torch.manual_seed(section.train.seed)  # seeded initial weights, as for the teacher
    model = create_model(
        student.model, dataset.num_classes, network_input_shape(dataset)[0], **student.kwargs
    )
    t_params = getattr(teacher, "num_parameters", None) or count_params(teacher)
    s_params = count_params(model)
    val = dataset.subset("val")
    main = is_main_process()
    teacher_acc = evaluate_model(teacher, val) if main else float("nan")  # for rank 0's log and manifest
    log(
        f"distill: {teacher_name} ({t_params:,} params, val acc {teacher_acc:.1%}) -> "
        f"{student.model} ({s_params:,} params, {t_params / max(s_params, 1):.1f}x fewer), "
        f"{section.kd.describe()}"
    )
    result = distill(
        model,
        teacher,
        dataset.subset("train"),
        val,
        section.train,
        section.kd,
        log=log,
        out_dir=out_dir / "distill-run",
        resume=resume,
        cache_dir=out_dir / "teacher_cache",
        progress=progress,
        teacher_name=f"teacher {teacher_path}",
    )
    path = out_dir / "student.pt"
    if main:
        save_trained(
            path,
            model,
            student.model,
            student.kwargs,
            dataset,
            metrics={
                "val_accuracy": result.best_val_accuracy,
                "best_epoch": result.best_epoch,
                "teacher_val_accuracy": teacher_acc,
                "teacher_params": t_params,
                "params": s_params,
                "compression": t_params / s_params if t_params else None,
                "history": result.history,
            },
            parents=[data_path, teacher_path],
            config={"student": to_dict(student), "distill": to_dict(section)},
        )
    barrier()  # every rank returns once student.pt exists
    return path


__all__ = ["DistillSection", "StudentSection", "stage_distill"]
