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
    ctx.exit(run_and_report(recipe, out_dir, overrides, output))


def run_and_report(
    recipe: str, out_dir: Path | None, overrides: tuple[str, ...], output: common.Output
) -> int:
    """Run ``recipe`` through the API, print its bench and gate tables; the gate's exit code."""
    from edgekd.api import run as run_recipe

    result = run_recipe(recipe, out=out_dir, overrides=overrides, log=output.log)
    if result is None:  # a torchrun rank other than 0: its part (training) is done
        return 0
    console = output.console()
    result.bench.print(console=console)
    if result.gate is not None:
        result.gate.print(console=console)
    console.print(
        f"bench.json and report.html in {result.out_dir}/ — whole pipeline {result.seconds:.0f} s",
        highlight=False,
    )
    if output.as_json:
        output.result(result.to_dict(), [])
    return result.exit_code


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
    ctx.exit(run_and_report(DEMO_RECIPE, out_dir, overrides, output))
