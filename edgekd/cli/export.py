"""``edgekd export``: a student checkpoint -> ONNX (+ OpenVINO IR, TensorRT engine), parity-checked."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import Output, artifact_summary, data_option, out_option, output_options, target_option


@click.command()
@click.argument("checkpoint", metavar="STUDENT.pt", type=click.Path(path_type=Path))
@data_option("Dataset (.npz, or the data stage's data.json) whose test frames check parity.")
@out_option(help_text="Output folder (default: the checkpoint's folder).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--openvino/--no-openvino", default=True, show_default=True, help="Also write OpenVINO IR.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Max abs error allowed vs PyTorch.")
@click.option("--simplify", is_flag=True, help="Simplify the graph with onnxslim before the checks.")
@click.option(
    "--tensorrt",
    "tensorrt_precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="Also build a TensorRT engine at this precision (needs TensorRT and a CUDA GPU).",
)
@click.option(
    "--calibration",
    default="random-256",
    show_default=True,
    metavar="RECIPE",
    help="Calibration recipe for --tensorrt int8.",
)
@target_option("Target profile whose input_shape sets the TensorRT optimization profile's batch.")
@output_options
def export(
    checkpoint: Path,
    data_path: Path,
    out_dir: Path | None,
    opset: int,
    openvino: bool,
    atol: float,
    simplify: bool,
    tensorrt_precision: str | None,
    calibration: str,
    target_name: str | None,
    output: Output,
) -> None:
    """Export STUDENT.pt to ONNX and OpenVINO IR; each must match PyTorch on real frames.

    \b
    Examples:
      edgekd export runs/modrec/student.pt --data runs/modrec/data.npz
      edgekd export runs/modrec/student.pt --data runs/modrec/data.npz --tensorrt fp16 \\
          --target jetson-orin-tensorrt-fp16        # on the Jetson itself: engines are not portable
    """
    from edgekd.api import export as run_export

    result = run_export(
        checkpoint,
        data=data_path,
        out=out_dir,
        opset=opset,
        openvino=openvino,
        atol=atol,
        simplify=simplify,
        tensorrt=tensorrt_precision,
        calibration=calibration,
        target=target_name,
        log=output.log,
    )
    outputs = result.paths
    output.result({name: artifact_summary(path) for name, path in outputs.items()}, list(outputs.values()))
