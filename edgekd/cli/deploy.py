"""``edgekd deploy``: the fastest artifact a target can run within its accuracy budget."""

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
@click.argument("student", metavar="STUDENT", type=click.Path(path_type=Path))
@click.option(
    "--target", "target_name", required=True, metavar="TARGET", help="Target profile: name or YAML."
)
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset .npz: calibration from its train split, figures on its test split.",
)
@out_option(default="deploy-out", help_text="Folder for deploy.json, deployed.<ext> and the cache.")
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
@click.option("--threads", type=int, help="Threads per runtime (default: the target's, else the runtime's).")
@click.option(
    "--min-runs", type=int, default=200, show_default=True, help="Timed runs per candidate at least."
)
@click.option("--min-seconds", type=float, default=1.0, show_default=True, help="Timed seconds at least.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build and measurement cache (default: OUT/cache).",
)
@click.option("--no-cache", is_flag=True, help="Build and measure everything again (the cache is refreshed).")
@ssh_options
@json_option
@quiet_option
def deploy(
    student: Path,
    target_name: str,
    data_path: Path,
    out_dir: Path,
    host: str | None,
    runtimes: str | None,
    calibration: str | None,
    max_accuracy_drop: float | None,
    threads: int | None,
    min_runs: int,
    min_seconds: float,
    cache_dir: Path | None,
    no_cache: bool,
    known_hosts: Path | None,
    identity: Path | None,
    remote_python: str,
    as_json: bool,
    quiet: bool,
) -> None:
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
    from edgekd.bench.latency import LatencyConfig
    from edgekd.deploy.report import print_deploy
    from edgekd.deploy.run import DeployOptions, deploy_student
    from edgekd.errors import EdgeKDError
    from edgekd.targets import load_target

    target = load_target(target_name)
    ssh = None
    if (host or target.host) != "local":
        from edgekd.remote.ssh import SshOptions

        ssh = SshOptions(known_hosts=known_hosts, identity=identity)
    opts = DeployOptions(
        out_dir=out_dir,
        cache_dir=cache_dir,
        host=host,
        ssh=ssh,
        remote_python=remote_python,
        runtimes=[r.strip() for r in runtimes.split(",") if r.strip()] if runtimes else None,
        calibration=calibration,
        latency=LatencyConfig(min_runs=min_runs, min_seconds=min_seconds),
        threads=threads,
        max_accuracy_drop=max_accuracy_drop,
        use_cache=not no_cache,
    )
    opts.latency.validate()
    try:
        doc = deploy_student(student, target, data_path, opts, log=make_log(quiet))
    except EdgeKDError as exc:
        document = getattr(exc, "document", None)
        if document is not None:  # the table says why every candidate lost
            print_deploy(document, console=make_console(stderr=as_json))
        raise
    if as_json:  # the document on stdout; the table to stderr for a person watching
        if not quiet:
            print_deploy(doc, console=make_console(stderr=True))
        emit_json(doc)
        return
    print_deploy(doc, console=make_console())
    click.echo(f"{out_dir / 'deploy.json'}\n{out_dir / doc['deployed']['file']}")
