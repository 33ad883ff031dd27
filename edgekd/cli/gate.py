"""``edgekd gate``: a result against a target's budgets; the exit code is the verdict."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import emit_json, make_console

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
    from edgekd.artifacts import atomic_write_json, require_file
    from edgekd.bench.schema import load_bench
    from edgekd.errors import ConfigError, EdgeKDError
    from edgekd.gate import evaluate_gate, gate_table, write_outputs
    from edgekd.gate.evaluate import check_result_fits
    from edgekd.gate.static import static_result
    from edgekd.targets import load_target

    profile = load_target(target)
    require_file(result, "result")
    is_bench = result.suffix.lower() == ".json"
    doc = load_bench(result) if is_bench else static_result(result, profile)
    check_result_fits(doc, profile, str(result))
    if update_baseline and baseline is None:
        raise ConfigError(
            "--update-baseline needs --baseline PATH", hint="name the file the baseline lives in"
        )
    base_doc = None
    if baseline is not None:
        if baseline.exists():
            base_doc = load_bench(baseline)
            check_result_fits(base_doc, profile, str(baseline))
        elif not update_baseline:  # a first --update-baseline run creates it
            require_file(baseline, "baseline")
    try:
        verdict = evaluate_gate(
            doc, profile, baseline=base_doc, baseline_name=str(baseline) if base_doc else None
        )
    except EdgeKDError as exc:  # a missing entry or anchor: say which files were judged
        files = [str(result)] + ([str(baseline)] if base_doc is not None else [])
        if not any(f in exc.message for f in files):
            exc.message = f"{' with baseline '.join(files)}: {exc.message}"
        raise
    to_stdout = json_out is not None and str(json_out) == "-"
    make_console(stderr=to_stdout).print(gate_table(verdict))
    write_outputs(verdict, junit=junit, markdown=markdown, json_path=None if to_stdout else json_out)
    if to_stdout:
        emit_json(verdict.to_dict())
    if update_baseline:
        if doc.get("static"):
            raise ConfigError("a static result cannot become a baseline", hint="gate a bench.json instead")
        atomic_write_json(baseline, doc)
        click.echo(f"baseline updated: {baseline}", err=True)
    ctx.exit(verdict.exit_code)
