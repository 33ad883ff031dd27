"""``edgekd quantize``: ONNX FP32 -> ONNX INT8 (QDQ), calibrated by a calibration recipe."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_log, quiet_option


@click.command()
@click.argument("model", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset .npz the calibration frames are drawn from.",
)
@click.option(
    "--calibration",
    default="modrec-stratified-snr",
    show_default=True,
    help="Calibration recipe: a YAML file or a name from calibration/.",
)
@click.option(
    "--activation-type",
    type=click.Choice(["auto", "uint8", "int8"]),
    default="auto",
    show_default=True,
    help="auto measures both and keeps the faster.",
)
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="Calibration method.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: MODEL.int8.onnx).",
)
@quiet_option
def quantize(
    model: Path,
    data_path: Path,
    calibration: str,
    activation_type: str,
    method: str,
    out_path: Path | None,
    quiet: bool,
) -> None:
    """Quantize MODEL.onnx to static INT8 with ONNX Runtime; checked against FP32.

    \b
    Example:
      edgekd quantize runs/modrec/student.onnx --data runs/modrec/data.npz
    """
    from edgekd.config import from_dict
    from edgekd.pipeline import stages
    from edgekd.quantize.ort_static import QuantizeConfig

    cfg = from_dict(
        QuantizeConfig,
        {"activation_type": activation_type, "calibration_method": method, "calibration": calibration},
    )
    out_path = out_path or model.with_name(f"{model.stem}.int8.onnx")
    stages.stage_quantize(model, data_path, cfg, out_path, make_log(quiet))
    click.echo(str(out_path))
