"""``edgekd gate``: a result against a target's budgets; the exit code is the verdict."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli import common

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("result", metavar="RESULT", type=click.Path(path_type=Path))
@click.option(
    "--target",
    required=True,
    metavar="TARGET",
    envvar="EDGEKD_TARGET",
    help="Target profile: YAML file or built-in name.",
)
@click.option("--baseline", type=_FILE, help="A previous bench.json to compare accuracy and latency with.")
@click.option("--update-baseline", is_flag=True, help="After judging, write RESULT as the new --baseline.")
@click.option("--junit", type=_FILE, help="Write JUnit XML (one test case per check).")
@click.option(
    "--markdown", type=_FILE, help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)."
)
@click.option(
    "--json",
    "json_out",
    type=_FILE,
    is_flag=False,
    flag_value="-",
    help="The verdict as JSON: --json alone prints it on stdout (the table goes to stderr), "
    "--json FILE writes it.",
)
@click.pass_context
def gate(
    ctx: click.Context,
    result: Path,
    target: str,
    baseline: Path | None,
    update_baseline: bool,
    junit: Path | None,
    markdown: Path | None,
    json_out: Path | None,
) -> None:
    """Check RESULT against TARGET's budgets. Exit 0 pass, 1 a budget broken, 2 bad input.

    RESULT is a bench.json, or a model file (.onnx, .pt, .xml, TensorRT engine) for a
    static gate of size, parameters and MACs that needs no benchmark run; the file must
    load in the runtime TARGET names, fit its input_shape and be of its precision.

    \b
    Examples:
      edgekd gate runs/modrec/bench.json --target x86-cpu-onnxruntime-int8
      edgekd gate runs/modrec/bench.json --target t.yaml --baseline main-bench.json --junit gate.xml
      edgekd gate runs/modrec/student.int8.onnx --target x86-cpu-onnxruntime-int8   # static
    """
    from edgekd.api import gate as run_gate

    to_stdout = json_out is not None and str(json_out) == "-"  # --json alone: the verdict on stdout
    output = common.Output(as_json=to_stdout, quiet=False)
    verdict = run_gate(
        result,
        target=target,
        baseline=baseline,
        update_baseline=update_baseline,
        junit=junit,
        markdown=markdown,
        json_path=None if to_stdout else json_out,
        log=output.log,
    )
    verdict.print(console=output.console())
    if output.as_json:
        output.result(verdict.to_dict(), [])
    ctx.exit(verdict.exit_code)
