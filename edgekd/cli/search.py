"""``edgekd search``: a student shaped for the target's latency budget, found by measuring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli import common


@click.command()
@click.option(
    "--teacher", required=True, type=click.Path(path_type=Path), help="Trained teacher (.pt or .onnx)."
)
@common.data_option("Dataset (.npz or the data stage's data.json) with train/val splits.")
@common.target_option("Target profile (name or YAML): where and how latency is measured.")
@click.option(
    "--latency-budget-ms",
    type=float,
    help="p50 budget in ms (default: the target's max_p90_ms, else its max_p50_ms).",
)
@click.option("--family", help="Student family: mobilenet1d, cnn1d_small, resnet1d, or a timm family.")
@click.option("--grid", multiple=True, metavar="KNOB=V1,V2", help="Values of one shape knob (repeatable).")
@click.option("--recipe", help="Recipe whose distill: and search: sections to use (name or YAML).")
@common.set_option
@click.option("--epochs", type=int, help="Epochs of the winner's full distillation (default: the recipe's).")
@common.out_option(default="runs/search", help_text="Folder for search.json, search.html and student.pt.")
@click.option("--host", help="local, or ssh://user@device[:port] (default: the target's host).")
@common.threads_option()
@common.ssh_options
@common.output_options
def search(output: common.Output, **params: Any) -> None:
    """Search the student's shape on the target device, within its latency budget.

    Every candidate of the family's grid is exported and built in the target's runtime and
    precision (INT8 with a quick calibration), and its latency measured with the bench harness
    on the target (locally or over SSH); measurements are cached by architecture and target.
    Candidates within budget are ranked by a training-free proxy (teacher-student relation
    similarity at initialisation), trained briefly by successive halving with one shared teacher
    cache, and the winner is distilled in full into OUT/student.pt, ready for `edgekd deploy`.

    \b
    Examples:
      edgekd search --teacher runs/modrec/teacher.pt --data runs/modrec/data.npz \\
          --target x86-cpu-onnxruntime-int8 --latency-budget-ms 0.05 --family mobilenet1d
      edgekd search --teacher t.pt --data data.npz --target x86-cpu-onnxruntime-int8 \\
          --grid width_mult=0.5,0.75 --grid stem_stride=1,2 --recipe modrec --out runs/s
    """
    from edgekd.api import search as run_search

    result = run_search(
        params.pop("teacher"),
        data=params.pop("data_path"),
        target=params.pop("target_name"),
        out=params.pop("out_dir"),
        log=output.log,
        **params,
    )
    if output.tables:
        result.print(console=output.console())
    out_dir = result.out_dir
    output.result(result.document, [out_dir / "search.json", out_dir / "search.html", result.student])
