"""``edgekd run`` and ``edgekd demo`` behind their options: one recipe through every stage,
its bench and gate tables, and the exit code the gate decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_command(recipe_name: str, out_dir: Path | None, overrides: tuple[str, ...], output: Any) -> int:
    """Run ``recipe_name`` (a YAML file or a built-in name) with ``--set`` ``overrides`` into
    ``out_dir`` (default ``runs/<recipe name>``), printing through ``output``
    (:class:`edgekd.cli.common.Output`). Returns the exit code: the gate's (0 pass, 1 a budget
    broken), 0 without a gate and on every rank but 0 under torchrun."""
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
        log = output.log if ctx.is_main else (lambda _msg: None)
        result = run_recipe(recipe, out_dir, log)
    if result is None:  # a rank other than 0: its part (training) is done
        return 0
    console = output.console()
    print_bench(result["bench"], console=console)
    gate = result["gate"]
    if gate is not None:
        console.print(gate_table(gate))
    console.print(
        f"bench.json and report.html in {out_dir}/ — whole pipeline {result['seconds']:.0f} s",
        highlight=False,
    )
    if output.as_json:
        summary = {
            "recipe": recipe.name,
            "out_dir": str(out_dir),
            "seconds": round(result["seconds"], 1),
            "gate": gate.to_dict() if gate is not None else None,
            "bench": result["bench"],
        }
        output.result(summary, [])
    return gate.exit_code if gate is not None else 0
