"""``edgekd bench``: latency and accuracy of models through one harness, any runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli import common


@click.command()
@click.argument("models", metavar="MODEL...", nargs=-1, required=True)
@common.data_option("Dataset (.npz, or the data stage's data.json); its test split is evaluated.")
@common.out_option(default="bench-out", help_text="Folder for bench.json and report.html.")
@click.option("--name", default="bench", show_default=True, help="Name recorded in bench.json.")
@common.threads_option()
@common.timing_options()
@click.option(
    "--reference",
    help="Entry that agreement and accuracy drop are measured against "
    "(default: torch/fp32 when benched here, else onnxruntime/fp32).",
)
@click.option(
    "--teacher",
    "teacher_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also record the teacher's accuracy on the same frames (.pt or .onnx).",
)
@common.target_option(
    "Target profile (name or YAML): each runtime's settings, threads and host come from it."
)
@click.option("--host", help="local, or ssh://user@device[:port] (default: the target's host, else local).")
@click.option(
    "--keep-going",
    is_flag=True,
    help="Record models that fail to load or run as failed entries and exit 0 "
    "(default: any failed model is exit 2 and nothing is written).",
)
@common.ssh_options
@common.output_options
def bench(output: common.Output, **params: Any) -> None:
    """Benchmark each MODEL: latency at batch 1, accuracy overall, per class and per SNR.

    A MODEL is a file (.pt runs in PyTorch, .onnx in ONNX Runtime, .xml in OpenVINO)
    or BACKEND/PRECISION=FILE to choose, e.g. openvino/fp32=student.onnx.

    With --host ssh://user@device the models and a small runner (numpy and the runtime
    only) are copied to the device and timed there; host keys are verified.

    With --target each runtime is opened the way the profile says (threads, device,
    ONNX Runtime execution mode and optimization level, OpenVINO hint and streams), and
    every model's input and the data's frames must fit the profile's input_shape.

    A model that fails to load or run (input shape, rank, dtype or input count that does
    not fit the data, an opset or domain the runtime lacks, ...) makes the bench exit 2
    with the reason per model, and nothing is written; --keep-going records it as a
    failed entry in bench.json instead. A runtime not installed here is a skipped entry.

    \b
    Examples:
      edgekd bench runs/modrec/student.pt runs/modrec/student.onnx \\
          runs/modrec/student.int8.onnx --data runs/modrec/data.npz --out runs/modrec
      edgekd bench runs/modrec/student.int8.onnx --data runs/modrec/data.npz \\
          --host ssh://pi@raspberrypi.local --known-hosts ~/.ssh/known_hosts
      edgekd bench runs/modrec/student.xml --data runs/modrec/data.npz \\
          --target x86-cpu-openvino-fp32
    """
    from edgekd.api import bench as run_bench

    report = run_bench(
        list(params.pop("models")),
        data=params.pop("data_path"),
        out=params.pop("out_dir"),
        teacher=params.pop("teacher_path"),
        target=params.pop("target_name"),
        log=output.log,
        **params,
    )
    report.print(console=output.console())
    output.result(report.document, [report.path, report.path.with_name("report.html")])
