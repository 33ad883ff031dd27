"""``edgekd distill``: data -> teacher -> student, from a recipe.

Runs under ``torchrun --nproc-per-node N -m edgekd distill ...`` too: one process group for
the whole command, DDP training, rank 0 alone writes files and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekd.cli.common import make_log, out_option, quiet_option, set_option


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
    from edgekd.api import distill as run_distill

    result = run_distill(
        teacher=teacher_path,
        config=recipe,
        overrides=overrides,
        train=data_path,
        out=out_dir,
        resume=resume,
        qat=qat,
        log=make_log(quiet),
        progress=not quiet and sys.stderr.isatty(),
    )
    if result.checkpoint is not None and result.is_main:
        click.echo(str(result.checkpoint))
    if result.qat_onnx is not None:
        click.echo(str(result.qat_onnx))
