"""``edgekd ensemble``: combine trained teachers into one ensemble teacher checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_log, quiet_option


@click.command()
@click.argument("members", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="CHECKPOINT...")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Ensemble .pt."
)
@quiet_option
def ensemble(members: tuple[Path, ...], out_path: Path, quiet: bool) -> None:
    """Combine two or more teacher checkpoints into one that predicts their mean logits.

    The members must be trained on the same classes and input shape (e.g. the same recipe
    with different seeds). Distil from the result as from any teacher checkpoint.

    \b
    Examples:
      edgekd ensemble runs/t0/teacher.pt runs/t1/teacher.pt runs/t2/teacher.pt --out teachers.pt
      edgekd distill --config modrec --teacher teachers.pt --out runs/kd-ensemble
    """
    from edgekd.api import ensemble as combine

    click.echo(str(combine(members, out=out_path, log=make_log(quiet))))
