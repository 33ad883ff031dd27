"""``edgekd distill``: data -> teacher -> student, from a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_log, out_option, quiet_option, set_option


@click.command()
@click.option(
    "--config", "recipe", required=True, metavar="RECIPE", help="Recipe YAML file or built-in name."
)
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="Use this dataset .npz instead.")
@click.option(
    "--teacher", "teacher_path", type=click.Path(path_type=Path), help="Use this teacher checkpoint."
)
@out_option(help_text="Output folder (default: runs/<recipe name>).")
@click.option("--resume", is_flag=True, help="Continue a killed run in --out (same settings): exact.")
@set_option
@quiet_option
def distill(
    recipe: str,
    data_path: Path | None,
    teacher_path: Path | None,
    out_dir: Path | None,
    resume: bool,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Distil a teacher into a compact student; writes student.pt and its manifest.

    \b
    Examples:
      edgekd distill --config modrec --out runs/kd
      edgekd distill --config modrec --data runs/kd/data.npz --teacher runs/kd/teacher.pt
    """
    from edgekd.artifacts import require_file
    from edgekd.pipeline import stages
    from edgekd.pipeline.recipe import load_recipe

    cfg = load_recipe(recipe, overrides)
    if teacher_path is not None:
        cfg.teacher.checkpoint = str(teacher_path.resolve())
    stages.preflight_models(cfg)
    out_dir = out_dir or Path("runs") / cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    log = make_log(quiet)
    if data_path is not None:
        data = require_file(data_path, "dataset")
    else:
        data = stages.stage_data(cfg.data, out_dir, cfg.path, log)
    teacher = stages.stage_teacher(cfg.teacher, data, out_dir, cfg.path, log, resume=resume)
    student = stages.stage_distill(cfg.student, cfg.distill, data, teacher, out_dir, log, resume=resume)
    click.echo(str(student))
