"""``edgekd run RECIPE`` and ``edgekd demo``: the whole pipeline from one YAML file."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import (
    emit_json,
    json_option,
    make_console,
    make_log,
    out_option,
    quiet_option,
    set_option,
)

DEMO_RECIPE = "modrec"


def _run(
    recipe_name: str, out_dir: Path | None, overrides: tuple[str, ...], quiet: bool, as_json: bool = False
) -> int:
    from edgekd.bench.table import print_bench
    from edgekd.distill.checks import resolve_device
    from edgekd.distill.distributed import command_process_group
    from edgekd.gate import gate_table
    from edgekd.pipeline.recipe import load_recipe
    from edgekd.pipeline.runner import run_recipe

    recipe = load_recipe(recipe_name, overrides)
    out_dir = out_dir or Path("runs") / recipe.name
    # Under torchrun the training stages run on every rank (DDP); rank 0 alone reports.
    with command_process_group(resolve_device(recipe.distill.train.device)) as ctx:
        log = make_log(quiet) if ctx.is_main else (lambda _msg: None)
        result = run_recipe(recipe, out_dir, log)
    if result is None:  # a rank other than 0: its part (training) is done
        return 0
    console = make_console(stderr=as_json)
    print_bench(result["bench"], console=console)
    exit_code = 0
    if result["gate"] is not None:
        console.print(gate_table(result["gate"]))
        exit_code = result["gate"].exit_code
    console.print(
        f"bench.json and report.html in {out_dir}/ — whole pipeline {result['seconds']:.0f} s",
        highlight=False,
    )
    if as_json:
        emit_json(
            {
                "recipe": recipe.name,
                "out_dir": str(out_dir),
                "seconds": round(result["seconds"], 1),
                "gate": result["gate"].to_dict() if result["gate"] is not None else None,
                "bench": result["bench"],
            }
        )
    return exit_code


@click.command()
@click.argument("recipe", metavar="RECIPE")
@out_option(help_text="Run folder (default: runs/<recipe name>).")
@set_option
@json_option
@quiet_option
@click.pass_context
def run(
    ctx: click.Context,
    recipe: str,
    out_dir: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
    quiet: bool,
) -> None:
    """Run every stage of RECIPE (a YAML file or a built-in recipe name).

    \b
    Examples:
      edgekd run my-recipe.yaml --out runs/exp1 --set distill.train.epochs=20
      torchrun --nproc-per-node 2 -m edgekd run my-recipe.yaml --out runs/exp1
    """
    ctx.exit(_run(recipe, out_dir, overrides, quiet, as_json))


@click.command()
@out_option(help_text="Run folder (default: runs/modrec).")
@set_option
@json_option
@quiet_option
@click.pass_context
def demo(
    ctx: click.Context, out_dir: Path | None, overrides: tuple[str, ...], as_json: bool, quiet: bool
) -> None:
    """Run the built-in modulation-recognition recipe end to end (minutes on 2 CPU cores).

    Generates RadioML-style IQ frames, trains a 1-D ResNet teacher, distils a small
    CNN student, exports ONNX and OpenVINO IR, quantizes to INT8, benchmarks every
    runtime, gates against targets/x86-cpu-onnxruntime-int8.yaml, and writes
    bench.json and report.html.
    """
    ctx.exit(_run(DEMO_RECIPE, out_dir, overrides, quiet, as_json))
