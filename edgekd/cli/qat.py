"""``edgekd qat``: quantization-aware distillation of a trained student -> Q/DQ INT8 ONNX + report."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import make_log, out_option, quiet_option, set_option


def _file_option(flag: str, help_text: str, required: bool = False):
    """``--flag PATH`` passed as the argument ``<flag>_path``."""
    dest = f"{flag.lstrip('-')}_path"
    return click.option(flag, dest, required=required, type=click.Path(path_type=Path), help=help_text)


@click.command()
@click.argument("student", metavar="STUDENT.pt", type=click.Path(path_type=Path))
@_file_option("--teacher", "Teacher checkpoint (.pt) or ONNX file.", required=True)
@_file_option("--data", "Dataset .npz.", required=True)
@out_option(help_text="Output folder (default: the student's folder).")
@_file_option(
    "--config", "QAT settings YAML (keys of edgekd.qat.QatConfig: activations, ranges, train, kd, ...)."
)
@click.option("--epochs", type=int, help="QAT fine-tuning epochs (default 3).")
@click.option("--lr", type=float, help="Peak learning rate (default 3e-4).")
@click.option(
    "--activations",
    type=click.Choice(["uint8", "int8"]),
    help="uint8: asymmetric (ONNX Runtime on x86, default); int8: symmetric (TensorRT).",
)
@set_option
@quiet_option
def qat(
    student: Path,
    teacher_path: Path,
    data_path: Path,
    out_dir: Path | None,
    config_path: Path | None,
    epochs: int | None,
    lr: float | None,
    activations: str | None,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Fine-tune STUDENT.pt with fake quantization against its teacher; write student.qat.onnx.

    Writes student.qat.onnx (Q/DQ, checked on ONNX Runtime and OpenVINO) with its manifest,
    and qat_report.json / qat_report.md: FP32, PTQ INT8 and QAT INT8 accuracy side by side.

    \b
    Examples:
      edgekd qat runs/kd/student.pt --teacher runs/kd/teacher.pt --data runs/kd/data.npz
      edgekd qat runs/kd/student.pt --teacher runs/kd/teacher.pt --data runs/kd/data.npz \\
          --epochs 5 --activations int8 --set ranges=frozen
    """
    from edgekd.api import qat as run_qat

    result = run_qat(
        student,
        teacher=teacher_path,
        data=data_path,
        out=out_dir,
        config=config_path,
        overrides=overrides,
        epochs=epochs,
        lr=lr,
        activations=activations,
        log=make_log(quiet),
    )
    click.echo(result.table())
    click.echo(str(result.onnx_path))
