"""The ``edgekd bench`` verb: models and a dataset in, bench.json and report.html out.

:mod:`edgekd.cli.bench` parses the options and calls :func:`bench_command`; everything the
verb decides (which entry each file is, the bench settings, local or remote, the target's
name in errors) is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError, EdgeKDError


def artifacts_from_specs(models: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """``{"backend/precision": file}`` from MODEL arguments: a file (its entry from the backend
    registry, see :func:`edgekd.pipeline.measure.entry_for_artifact`) or ``BACKEND/PRECISION=FILE``.

    Raises:
        InputFileError: a file that does not exist. ConfigError: two files that would be one entry.
    """
    from edgekd.artifacts import require_file
    from edgekd.pipeline.measure import entry_for_artifact

    artifacts: dict[str, Path] = {}
    for spec in models:
        entry_id, sep, file_name = spec.partition("=")
        path = require_file(file_name if sep else spec, "model")
        entry_id = entry_id if sep else entry_for_artifact(path)
        if entry_id in artifacts:
            raise ConfigError(
                f"two models would both be {entry_id!r}", hint="name one: BACKEND/PRECISION=FILE"
            )
        artifacts[entry_id] = path
    return artifacts


def _bench_config(artifacts: dict[str, Path], target: Any, params: dict[str, Any]) -> Any:
    from edgekd.bench.runner import BenchConfig
    from edgekd.config import from_dict

    return from_dict(
        BenchConfig,
        {
            "threads": params["threads"],
            "backends": list(artifacts),
            "latency": {"min_runs": params["min_runs"], "min_seconds": params["min_seconds"]},
            "keep_going": params["keep_going"],
            # A target's input_shape: every model and the data's frames must fit it.
            "input_shape": target.input_shape if target else None,
        },
    )


def run_bench_verb(
    models: tuple[str, ...] | list[str], data_path: Path, out_dir: Path, *, log: Any, **params: Any
) -> dict[str, Any]:
    """Bench ``models`` on ``data_path`` and write bench.json + report.html in ``out_dir``.

    ``params``: name, threads, min_runs, min_seconds, reference, teacher_path, target_name,
    host, keep_going, known_hosts, identity, remote_python (the CLI's options). Returns the
    bench document.
    """
    from edgekd import resources
    from edgekd.artifacts import require_file
    from edgekd.backends.profile_options import resolve_threads
    from edgekd.pipeline.measure import stage_bench
    from edgekd.targets import load_target

    target_name = params["target_name"]
    target = load_target(target_name) if target_name else None
    resolve_threads(params["threads"], target)  # a bad --threads is one line before any work
    host = params["host"] or (target.host if target else "local")
    artifacts = artifacts_from_specs(models)
    student = next((p for k, p in artifacts.items() if k.startswith("torch/")), None)
    cfg = _bench_config(artifacts, target, params)
    reference, ssh = params["reference"], None
    if host != "local":
        from edgekd.remote.ssh import SshOptions

        ssh = SshOptions(known_hosts=params["known_hosts"], identity=params["identity"])
        if reference == "torch/fp32":  # PyTorch does not run on the device
            reference = "onnxruntime/fp32"
    teacher_path = params["teacher_path"]
    # No mkdir here: bench.json and report.html are written atomically (folders made then),
    # so a bench that fails leaves nothing at --out.
    try:
        return stage_bench(
            artifacts,
            student,
            data_path,
            cfg,
            out_dir,
            name=params["name"],
            reference=reference,
            host=host,
            ssh=ssh,
            remote_python=params["remote_python"],
            teacher_path=require_file(teacher_path, "teacher") if teacher_path else None,
            target=target,
            log=log,
        )
    except EdgeKDError as exc:
        if target is not None:  # the runner knows the shape, not where it came from
            where = f"target {target.name}'s input_shape ({resources.resolve('targets', target_name)})"
            exc.message = exc.message.replace("the target's input_shape", where)
        raise


def bench_command(
    *, output: Any, models: tuple[str, ...], data_path: Path, out_dir: Path, **params: Any
) -> None:
    """``edgekd bench``: run the verb, print the table, then the files written (or the JSON)."""
    from edgekd.bench.table import print_bench

    doc = run_bench_verb(models, data_path, out_dir, log=output.log, **params)
    print_bench(doc, console=output.console())
    output.result(doc, [out_dir / "bench.json", out_dir / "report.html"])
