"""``edgekd bench``: latency and accuracy of models through one harness, any runtime."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.common import (
    emit_json,
    json_option,
    make_console,
    make_log,
    out_option,
    quiet_option,
    ssh_options,
)


@click.command()
@click.argument("models", metavar="MODEL...", nargs=-1, required=True)
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset (.npz, or the data stage's data.json); its test split is evaluated.",
)
@out_option(default="bench-out", help_text="Folder for bench.json and report.html.")
@click.option("--name", default="bench", show_default=True, help="Name recorded in bench.json.")
@click.option("--threads", type=int, help="Threads per runtime (default: the runtime's own).")
@click.option("--min-runs", type=int, default=200, show_default=True, help="Timed runs at least.")
@click.option("--min-seconds", type=float, default=1.0, show_default=True, help="Timed seconds at least.")
@click.option(
    "--reference",
    default="torch/fp32",
    show_default=True,
    help="Entry that agreement and accuracy drop are measured against.",
)
@click.option(
    "--teacher",
    "teacher_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also record the teacher's accuracy on the same frames (.pt or .onnx).",
)
@click.option(
    "--target",
    "target_name",
    metavar="TARGET",
    envvar="EDGEKD_TARGET",
    help="Target profile (name or YAML): each runtime's settings, threads and host come from it.",
)
@click.option("--host", help="local, or ssh://user@device[:port] (default: the target's host, else local).")
@click.option(
    "--keep-going",
    is_flag=True,
    help="Record models that fail to load or run as failed entries and exit 0 "
    "(default: any failed model is exit 2 and nothing is written).",
)
@ssh_options
@json_option
@quiet_option
def bench(
    models: tuple[str, ...],
    data_path: Path,
    out_dir: Path,
    name: str,
    threads: int | None,
    min_runs: int,
    min_seconds: float,
    reference: str,
    teacher_path: Path | None,
    target_name: str | None,
    host: str | None,
    keep_going: bool,
    known_hosts: Path | None,
    identity: Path | None,
    remote_python: str,
    as_json: bool,
    quiet: bool,
) -> None:
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
    from edgekd import resources
    from edgekd.artifacts import require_file
    from edgekd.bench.runner import BenchConfig
    from edgekd.bench.table import print_bench
    from edgekd.config import from_dict
    from edgekd.errors import ConfigError, EdgeKDError
    from edgekd.pipeline import stages
    from edgekd.targets import load_target

    target = load_target(target_name) if target_name else None
    host = host or (target.host if target else "local")
    artifacts: dict[str, Path] = {}
    for spec in models:
        entry_id, sep, file_name = spec.partition("=")
        path = require_file(file_name if sep else spec, "model")
        entry_id = entry_id if sep else stages.entry_for_artifact(path)
        if entry_id in artifacts:
            raise ConfigError(
                f"two models would both be {entry_id!r}", hint="name one: BACKEND/PRECISION=FILE"
            )
        artifacts[entry_id] = path
    student = next((p for k, p in artifacts.items() if k.startswith("torch/")), None)
    cfg = from_dict(
        BenchConfig,
        {
            "threads": threads,
            "backends": list(artifacts),
            "latency": {"min_runs": min_runs, "min_seconds": min_seconds},
            "keep_going": keep_going,
            # A target's input_shape: every model and the data's frames must fit it.
            "input_shape": target.input_shape if target else None,
        },
    )
    ssh = None
    if host != "local":
        from edgekd.remote.ssh import SshOptions

        ssh = SshOptions(known_hosts=known_hosts, identity=identity)
        if reference == "torch/fp32":  # PyTorch does not run on the device
            reference = "onnxruntime/fp32"
    # No mkdir here: bench.json and report.html are written atomically (folders made then),
    # so a bench that fails leaves nothing at --out.
    try:
        doc = stages.stage_bench(
            artifacts,
            student,
            data_path,
            cfg,
            out_dir,
            name=name,
            reference=reference,
            host=host,
            ssh=ssh,
            remote_python=remote_python,
            teacher_path=require_file(teacher_path, "teacher") if teacher_path else None,
            target=target,
            log=make_log(quiet),
        )
    except EdgeKDError as exc:
        if target is not None:  # the runner knows the shape, not where it came from
            where = f"target {target.name}'s input_shape ({resources.resolve('targets', target_name)})"
            exc.message = exc.message.replace("the target's input_shape", where)
        raise
    print_bench(doc, console=make_console(stderr=as_json))
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"{out_dir / 'bench.json'}\n{out_dir / 'report.html'}")
