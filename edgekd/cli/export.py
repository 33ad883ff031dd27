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
    from edgekd.artifacts import ensure_dir, require_file
    from edgekd.config import from_dict
    from edgekd.export.onnx_export import ExportConfig
    from edgekd.pipeline.export_stage import stage_export

    require_file(checkpoint, "checkpoint")
    cfg = from_dict(
        ExportConfig, {"opset": opset, "openvino": openvino, "simplify": simplify, "parity": {"atol": atol}}
    )
    if tensorrt_precision is not None:
        from edgekd.export.tensorrt.plan import TensorRTConfig

        cfg.tensorrt = from_dict(
            TensorRTConfig, {"precision": tensorrt_precision, "calibration": calibration}
        )
    target_shape = target_file = None
    if target_name is not None:  # read before anything is written
        from edgekd import resources
        from edgekd.targets import load_target

        target_file = resources.resolve("targets", target_name)
        target_shape = load_target(target_file).input_shape
    out_dir = out_dir or checkpoint.parent
    ensure_dir(out_dir)  # removed again if the export fails
    outputs = stage_export(
        checkpoint,
        data_path,
        cfg,
        out_dir,
        output.log,
        require_tensorrt=tensorrt_precision is not None,
        target_shape=target_shape,
        target_file=target_file,
    )
    output.result({name: artifact_summary(path) for name, path in outputs.items()}, list(outputs.values()))
