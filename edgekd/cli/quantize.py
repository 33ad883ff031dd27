"""``edgekd quantize``: ONNX FP32 -> INT8 by a registered quantizer (ONNX Runtime QDQ,
OpenVINO/NNCF, ...), calibrated by a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.api.quantize_api import quantizer_names
from edgekd.cli.common import Output, artifact_summary, data_option, output_options, threads_option


def _choice(flag: str, choices: list[str], default: str, help_text: str):
    """A ``flag`` taking one of ``choices`` (``default`` shown in --help)."""
    return click.option(flag, type=click.Choice(choices), default=default, show_default=True, help=help_text)


@click.command()
@click.argument("model", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@data_option("Dataset (.npz, or the data stage's data.json) the calibration frames are drawn from.")
@click.option(
    "--calibration",
    help="Calibration recipe: a YAML file or a name from calibration/ "
    "(default: modrec-stratified-snr when the data has SNR labels, else random-256).",
)
@_choice("--activation-type", ["auto", "uint8", "int8"], "auto", "auto measures both and keeps the faster.")
@_choice("--method", ["minmax", "entropy", "percentile"], "minmax", "Calibration method.")
@_choice(
    "--runtime",
    quantizer_names(),
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
    calibration: str | None,
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
    from edgekd.api import quantize as run_quantize

    result = run_quantize(
        model,
        calibration=data_path,
        calibration_recipe=calibration,
        out=out_path,
        runtime=runtime,
        activation_type=activation_type,
        method=method,
        accuracy_aware=accuracy_aware,
        max_accuracy_drop=max_accuracy_drop,
        min_top1_agreement=min_top1_agreement,
        require_speedup=require_speedup,
        threads=threads,
        log=output.log,
    )
    output.result(artifact_summary(result.path), [result.path])
