"""Distillation from a recipe: data -> teacher -> student, as ``edgekd distill --config`` runs it.

Runs under ``torchrun --nproc-per-node N`` too: one process group for the whole call, DDP
training, rank 0 alone writes files and logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.api.results import DistillResult


def _checked_data(path: Path, input_shape: list[int], checks: Sequence[Any]) -> Path:
    """``path`` (an .npz, or the data.json index of lazily read data) after checking it as a
    training set: valid labels, every split, train with every class, and ``checks`` (frames and
    classes that fit the teacher checkpoint)."""
    from edgekd.artifacts import require_file
    from edgekd.data.artifact import open_data
    from edgekd.data.validate import check_input_shape, check_splits
    from edgekd.pipeline.checks import run_checks

    dataset = open_data(require_file(path, "dataset"))
    check_input_shape(dataset, input_shape, f"dataset {path}")
    check_splits(
        dataset,
        f"dataset {path}",
        "give the file's split array frames of every class in train (0) "
        "and some in val (1) and test (2), or run distill without --data",
    )
    run_checks(checks, dataset, f"dataset {path}")
    return path


def distill_recipe(
    recipe: str,
    overrides: Sequence[str],
    *,
    data_path: Path | None,
    teacher_path: Path | None,
    out: Path | None,
    resume: bool,
    qat: bool,
    log: Any,
    progress: bool,
) -> DistillResult:
    """The recipe's data, teacher and distillation stages into ``out`` (default runs/<name>);
    ``data_path`` and ``teacher_path`` replace the recipe's data stage and teacher."""
    from edgekd.artifacts import ensure_dir
    from edgekd.distill.checks import resolve_device
    from edgekd.distill.distributed import command_process_group
    from edgekd.pipeline import data_stage, distill_stage, teacher_stage
    from edgekd.pipeline.preflight import preflight_training
    from edgekd.pipeline.recipe import load_recipe

    cfg = load_recipe(recipe, overrides)
    if qat:
        from edgekd.qat.files import require_single_process

        require_single_process()
    if teacher_path is not None:
        cfg.teacher.checkpoint = str(teacher_path.resolve())
    # The models build, the teacher file opens: before anything is created or trained.
    checked = preflight_training(cfg, qat=qat)
    out = out or Path("runs") / cfg.name
    # A given dataset is checked before anything is created or trained.
    given = None if data_path is None else _checked_data(data_path, cfg.data.input_shape, checked.data_checks)
    with command_process_group(resolve_device(cfg.distill.train.device)) as ctx:
        say = log if ctx.is_main else (lambda _msg: None)  # rank 0 alone reports
        if ctx.is_main:
            ensure_dir(out)  # removed again if the call fails before writing into it
        data = given or data_stage.stage_data(cfg.data, out, cfg.path, say, checks=checked.data_checks)
        teacher = teacher_stage.stage_teacher(
            cfg.teacher,
            data,
            out,
            cfg.path,
            say,
            resume=resume,
            progress=progress and ctx.is_main,
            hide_labels=cfg.data.hide_labels,
        )
        student = distill_stage.stage_distill(
            cfg.student,
            cfg.distill,
            data,
            teacher,
            out,
            say,
            resume=resume,
            progress=progress and ctx.is_main,
            data_section=cfg.data,
            resolve=cfg.path,
        )
    qat_onnx = None
    if qat:
        from edgekd.qat.files import qat_config_for_recipe, qat_from_files

        qat_onnx = qat_from_files(student, teacher, data, out, qat_config_for_recipe(cfg), log).onnx_path
    return _result(student, teacher, data, out, qat_onnx, is_main=ctx.is_main)


def _result(
    student: Path, teacher: Path, data: Path, out: Path, qat_onnx: Path | None, *, is_main: bool
) -> DistillResult:
    from edgekd.artifacts import read_manifest
    from edgekd.models.checkpoint import load_checkpoint

    metrics = read_manifest(student, required=False).get("metrics") or {}
    return DistillResult(
        student=load_checkpoint(student)[0],
        checkpoint=student,
        teacher=None,  # not loaded again: teacher_checkpoint names it
        teacher_checkpoint=teacher,
        val_accuracy=float(metrics.get("val_accuracy", float("nan"))),
        best_epoch=int(metrics.get("best_epoch", 0)),
        teacher_val_accuracy=float(metrics.get("teacher_val_accuracy", float("nan"))),
        history=list(metrics.get("history") or []),
        out_dir=out,
        data=data,
        qat_onnx=qat_onnx,
        is_main=is_main,
    )


__all__ = ["distill_recipe"]
