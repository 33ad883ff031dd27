"""``edgekd gate``: a bench result against a target's budgets; the exit code is the verdict."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_console


@click.command()
@click.argument("result", metavar="BENCH.json", type=click.Path(path_type=Path))
@click.option("--target", required=True, metavar="TARGET", help="Target profile: YAML file or built-in name.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the verdict as JSON.",
)
@click.pass_context
def gate(ctx: click.Context, result: Path, target: str, json_out: Path | None) -> None:
    """Check BENCH.json against TARGET's budgets. Exit 0 pass, 1 a budget broken, 2 bad input.

    \b
    Example:
      edgekd gate runs/modrec/bench.json --target x86-cpu-onnxruntime-int8
    """
    from edgekd.artifacts import atomic_write_json
    from edgekd.bench.schema import load_bench
    from edgekd.gate import evaluate_gate, gate_table
    from edgekd.targets import load_target

    profile = load_target(target)
    verdict = evaluate_gate(load_bench(result), profile)
    make_console().print(gate_table(verdict))
    if json_out is not None:
        atomic_write_json(json_out, verdict.to_dict())
    ctx.exit(verdict.exit_code)
