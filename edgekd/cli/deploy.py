"""``edgekd deploy``: the fastest artifact a target can run within its accuracy budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli import common


@click.command()
@click.argument("student", metavar="STUDENT", type=click.Path(path_type=Path))
@common.target_option(required=True)
@common.data_option("Dataset .npz: calibration from its train split, figures on its test split.")
@common.out_option(default="deploy-out", help_text="Folder for deploy.json, deployed.<ext> and the cache.")
@click.option("--host", help="local, or ssh://user@device[:port] (default: the target's host).")
@click.option(
    "--runtimes",
    metavar="LIST",
    help="Only these runtimes, comma-separated (default: every runtime the target's device allows).",
)
@click.option(
    "--calibration",
    help="Calibration recipe for INT8 (default: modrec-stratified-snr with SNR labels, else random-256).",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    help="Accuracy a candidate may lose against FP32 (0.01 = one point; default: the target's budget).",
)
@common.threads_option()
@common.timing_options("Timed runs per candidate at least.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build and measurement cache (default: OUT/cache).",
)
@click.option("--no-cache", is_flag=True, help="Build and measure everything again (the cache is refreshed).")
@common.ssh_options
@common.output_options
def deploy(output: common.Output, **params: Any) -> None:
    """Build every candidate artifact the target allows, measure each, keep the fastest in budget.

    Candidates: PyTorch eager FP32 (the baseline), ONNX Runtime FP32 and INT8 (unsigned and
    signed activations), OpenVINO FP32, FP16/BF16 (where the CPU executes them) and INT8
    (NNCF), TensorRT (where installed). A candidate is dropped when it loses more accuracy
    than the budget or is not faster than a simpler one beyond the measured noise; the
    lowest p50 of the rest wins. Builds and measurements are cached by content hash.

    Writes OUT/deploy.json (every candidate, its figures and why it won or lost) and
    OUT/deployed.<ext> with a manifest. Exit 1 when no candidate is within the budget.

    \b
    Examples:
      edgekd deploy runs/modrec/student.pt --target x86-cpu-onnxruntime-int8 \\
          --data runs/modrec/data.npz --out runs/modrec/deploy
      edgekd deploy student.onnx --target raspberry-pi5-onnxruntime-int8 --data data.npz \\
          --known-hosts ~/.ssh/known_hosts --json
    """
    from edgekd.api import deploy as run_deploy
    from edgekd.api.workflows import DeployResult
    from edgekd.errors import EdgeKDError

    try:
        result = run_deploy(
            params.pop("student"),
            target=params.pop("target_name"),
            data=params.pop("data_path"),
            out=params.pop("out_dir"),
            use_cache=not params.pop("no_cache"),
            log=output.log,
            **params,
        )
    except EdgeKDError as exc:
        document = getattr(exc, "document", None)
        if document is not None:  # the table says why every candidate lost
            DeployResult(document, None).print(console=output.console())
        raise
    if output.tables:  # with --json the table goes to stderr, for a person watching
        result.print(console=output.console())
    output.result(result.document, [result.path.with_name("deploy.json"), result.path])
