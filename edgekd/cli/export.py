"""``edgekd export``: a student checkpoint -> ONNX (+ OpenVINO IR), parity-checked."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_log, out_option, quiet_option


@click.command()
@click.argument("checkpoint", metavar="STUDENT.pt", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset .npz whose test frames check parity.",
)
@out_option(help_text="Output folder (default: the checkpoint's folder).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--openvino/--no-openvino", default=True, show_default=True, help="Also write OpenVINO IR.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Max abs error allowed vs PyTorch.")
@click.option("--simplify", is_flag=True, help="Simplify the graph with onnxslim before the checks.")
@quiet_option
def export(
    checkpoint: Path,
    data_path: Path,
    out_dir: Path | None,
    opset: int,
    openvino: bool,
    atol: float,
    simplify: bool,
    quiet: bool,
) -> None:
    """Export STUDENT.pt to ONNX and OpenVINO IR; each must match PyTorch on real frames.

    \b
    Example:
      edgekd export runs/modrec/student.pt --data runs/modrec/data.npz
    """
    from edgekd.artifacts import require_file
    from edgekd.config import from_dict
    from edgekd.export.onnx_export import ExportConfig
    from edgekd.pipeline import stages

    require_file(checkpoint, "checkpoint")
    cfg = from_dict(
        ExportConfig, {"opset": opset, "openvino": openvino, "simplify": simplify, "parity": {"atol": atol}}
    )
    out_dir = out_dir or checkpoint.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = stages.stage_export(checkpoint, data_path, cfg, out_dir, make_log(quiet))
    for path in outputs.values():
        click.echo(str(path))
