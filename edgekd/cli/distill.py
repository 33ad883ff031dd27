"""``edgekd distill``: data -> teacher -> student, from a recipe.

Runs under ``torchrun --nproc-per-node N -m edgekd distill ...`` too: one process group for
the whole command, DDP training, rank 0 alone writes files and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgekd.cli.common import make_log, out_option, quiet_option, set_option

if TYPE_CHECKING:
    from edgekd.pipeline.checks import DataCheck


def _checked_data(path: Path, input_shape: list[int], checks: Sequence[DataCheck]) -> Path:
    """``path`` (an .npz, or the data.json index of lazily read data) after checking it as a
    training set: valid labels, every split, train with every class, and ``checks`` (frames and
    classes that fit the teacher checkpoint)."""
    from edgekd.data.artifact import open_data
    from edgekd.data.validate import check_input_shape, check_splits
    from edgekd.pipeline.checks import run_checks

    dataset = open_data(path)
    check_input_shape(dataset, input_shape, f"dataset {path}")
    check_splits(
        dataset,
        f"dataset {path}",
        "give the file's split array frames of every class in train (0) "
        "and some in val (1) and test (2), or run distill without --data",
    )
    run_checks(checks, dataset, f"dataset {path}")
    return path


@click.command()
@click.option(
    "--config", "recipe", required=True, metavar="RECIPE", help="Recipe YAML file or built-in name."
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    help="Use this dataset instead: an .npz, or the data.json of an earlier run.",
)
@click.option(
    "--teacher", "teacher_path", type=click.Path(path_type=Path), help="Use this teacher checkpoint."
)
@out_option(help_text="Output folder (default: runs/<recipe name>).")
@click.option("--resume", is_flag=True, help="Continue a killed run in --out (same settings): exact.")
@click.option(
    "--qat", is_flag=True, help="Then quantization-aware distillation: student.qat.onnx (see `edgekd qat`)."
)
@set_option
@quiet_option
def distill(
    recipe: str,
    data_path: Path | None,
    teacher_path: Path | None,
    out_dir: Path | None,
    resume: bool,
    qat: bool,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Distil a teacher into a compact student; writes student.pt and its manifest.

    \b
    Examples:
      edgekd distill --config modrec --out runs/kd
      edgekd distill --config modrec --data runs/kd/data.npz --teacher runs/kd/teacher.pt
      torchrun --nproc-per-node 2 -m edgekd distill --config modrec --out runs/kd
    """
    from edgekd.artifacts import ensure_dir, require_file
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
    checked = preflight_training(cfg)
    out_dir = out_dir or Path("runs") / cfg.name
    # A given dataset is checked before anything is created or trained.
    given = (
        None
        if data_path is None
        else _checked_data(require_file(data_path, "dataset"), cfg.data.input_shape, checked.data_checks)
    )
    with command_process_group(resolve_device(cfg.distill.train.device)) as ctx:
        log = make_log(quiet) if ctx.is_main else (lambda _msg: None)  # rank 0 alone reports
        progress = ctx.is_main and not quiet and sys.stderr.isatty()
        if ctx.is_main:
            ensure_dir(out_dir)  # removed again if the command fails before writing into it
        data = (
            given
            if given is not None
            else data_stage.stage_data(cfg.data, out_dir, cfg.path, log, checks=checked.data_checks)
        )
        teacher = teacher_stage.stage_teacher(
            cfg.teacher, data, out_dir, cfg.path, log, resume=resume, progress=progress
        )
        student = distill_stage.stage_distill(
            cfg.student, cfg.distill, data, teacher, out_dir, log, resume=resume, progress=progress
        )
        if ctx.is_main:
            click.echo(str(student))
    if qat:
        from edgekd.qat.files import qat_config_for_recipe, qat_from_files

        result = qat_from_files(student, teacher, data, out_dir, qat_config_for_recipe(cfg), make_log(quiet))
        click.echo(str(result.onnx_path))
