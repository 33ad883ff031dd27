"""``edgekd run RECIPE`` and ``edgekd demo``: the whole pipeline from one YAML file."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli import common

DEMO_RECIPE = "modrec"


@click.command()
@click.argument("recipe", metavar="RECIPE")
@common.out_option(help_text="Run folder (default: runs/<recipe name>).")
@common.set_option
@common.output_options
@click.pass_context
def run(
    ctx: click.Context, recipe: str, out_dir: Path | None, overrides: tuple[str, ...], output: common.Output
) -> None:
    """Run every stage of RECIPE (a YAML file or a built-in recipe name).

    \b
    Examples:
      edgekd run my-recipe.yaml --out runs/exp1 --set distill.train.epochs=20
      torchrun --nproc-per-node 2 -m edgekd run my-recipe.yaml --out runs/exp1
    """
    from edgekd.pipeline.run_command import run_command

    ctx.exit(run_command(recipe, out_dir, overrides, output))


@click.command()
@common.out_option(help_text="Run folder (default: runs/modrec).")
@common.set_option
@common.output_options
@click.pass_context
def demo(ctx: click.Context, out_dir: Path | None, overrides: tuple[str, ...], output: common.Output) -> None:
    """Run the built-in modulation-recognition recipe end to end (minutes on 2 CPU cores).

    Generates RadioML-style IQ frames, trains a 1-D ResNet teacher, distils a small
    CNN student, exports ONNX and OpenVINO IR, quantizes to INT8, benchmarks every
    runtime, gates against targets/x86-cpu-onnxruntime-int8.yaml, and writes
    bench.json and report.html.
    """
    from edgekd.pipeline.run_command import run_command

    ctx.exit(run_command(DEMO_RECIPE, out_dir, overrides, output))
