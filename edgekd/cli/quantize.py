"""``edgekd quantize``: ONNX FP32 -> INT8 by a registered quantizer (ONNX Runtime QDQ,
OpenVINO/NNCF, ...), calibrated by a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import Output, artifact_summary, data_option, output_options, threads_option
from edgekd.quantize.quantizers import QUANTIZERS


def _choice(flag: str, choices: list[str], default: str, help_text: str):
    """A ``flag`` taking one of ``choices`` (``default`` shown in --help)."""
    return click.option(flag, type=click.Choice(choices), default=default, show_default=True, help=help_text)


@click.command()
@click.argument("model", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@data_option("Dataset (.npz, or the data stage's data.json) the calibration frames are drawn from.")
@click.option(
    "--calibration",
    default="modrec-stratified-snr",
    show_default=True,
    help="Calibration recipe: a YAML file or a name from calibration/.",
)
@_choice("--activation-type", ["auto", "uint8", "int8"], "auto", "auto measures both and keeps the faster.")
@_choice("--method", ["minmax", "entropy", "percentile"], "minmax", "Calibration method.")
@_choice(
    "--runtime",
    QUANTIZERS.names(),
    "onnxruntime",
    "The quantizer: onnxruntime: QDQ ONNX; openvino: NNCF-quantized IR.",
)
@click.option(
    "--accuracy-aware", is_flag=True, help="Keep the most damaging layers in float until within budget."
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=0.02,
    show_default=True,
    help="Accuracy INT8 may lose on the validation split (0.02 = two points).",
)
@click.option(
    "--min-top1-agreement",
    type=click.FloatRange(0.0, 1.0),
    default=0.9,
    show_default=True,
    help="Share of evaluation frames whose INT8 top-1 must equal FP32's. Low-SNR radio frames "
    "sit near decision boundaries: the built-in modulation recipes use 0.8.",
)
@click.option("--require-speedup", is_flag=True, help="Fail when INT8 is not faster than FP32 here.")
@threads_option("Threads INT8 and FP32 are timed with (default: every core this process may use).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: the quantizer's name beside MODEL, e.g. MODEL.int8.onnx).",
)
@output_options
def quantize(
    model: Path,
    data_path: Path,
    calibration: str,
    activation_type: str,
    method: str,
    runtime: str,
    accuracy_aware: bool,
    max_accuracy_drop: float,
    min_top1_agreement: float,
    require_speedup: bool,
    threads: int | None,
    out_path: Path | None,
    output: Output,
) -> None:
    """Quantize MODEL.onnx to INT8 (ONNX Runtime QDQ, or OpenVINO through NNCF), checked against FP32.

    The INT8 model must keep top-1 agreement with FP32 and lose at most
    --max-accuracy-drop of accuracy on the validation split, or nothing is written.

    \b
    Examples:
      edgekd quantize runs/modrec/student.onnx --data runs/modrec/data.npz --min-top1-agreement 0.8
      edgekd quantize runs/modrec/student.onnx --data runs/modrec/data.npz --runtime openvino
    """
    from edgekd.artifacts import require_file
    from edgekd.backends.profile_options import resolve_threads
    from edgekd.config import from_dict
    from edgekd.data.artifact import open_data
    from edgekd.data.batches import network_input_shape
    from edgekd.export.onnx_graph import check_onnx_fits_data
    from edgekd.pipeline import quantize_stage
    from edgekd.quantize.config import QuantizeConfig
    from edgekd.quantize.quantizers import quantizer_for

    cfg = from_dict(
        QuantizeConfig,
        {
            "activation_type": activation_type,
            "calibration_method": method,
            "calibration": calibration,
            "runtime": runtime,
            "accuracy_aware": accuracy_aware,
            "max_accuracy_drop": max_accuracy_drop,
            "min_top1_agreement": min_top1_agreement,
            "require_speedup": require_speedup,
        },
    )
    threads = resolve_threads(threads)
    require_file(model, "ONNX model", hint="run `edgekd export` first")
    if model.suffix.lower() == ".onnx":  # at the door: not after a whole quantization
        dataset = open_data(data_path)  # its labels and shape only: no frame is read here
        check_onnx_fits_data(model, network_input_shape(dataset), dataset.num_classes, data_path)
    out_path = out_path or quantizer_for(cfg).output_path(model.parent, model)
    quantize_stage.stage_quantize(model, data_path, cfg, out_path, output.log, threads=threads)
    output.result(artifact_summary(out_path), [out_path])
