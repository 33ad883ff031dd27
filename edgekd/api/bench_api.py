"""``edgekd.bench``: latency and accuracy of models through one harness, any runtime, local or SSH.

Which entry each file is, the bench settings, local or remote, the target's name in errors:
everything ``edgekd bench`` decides is here; the command prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.api.distill_api import with_thread_policy
from edgekd.api.results import BenchReport
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


def _reference(asked: str | None, artifacts: dict[str, Path], host: str) -> str:
    """The entry accuracy drop and agreement are measured against: ``asked``, else PyTorch FP32
    when it is benched here (it does not run on a remote device), else ONNX Runtime FP32, else
    the first FP32 entry."""
    if asked is not None and not (asked == "torch/fp32" and host != "local"):
        return asked
    if host == "local" and "torch/fp32" in artifacts:
        return "torch/fp32"
    fp32 = [k for k in artifacts if k.endswith("/fp32") and not k.startswith("torch/")]
    if "onnxruntime/fp32" in artifacts or not fp32:
        return "onnxruntime/fp32"
    return fp32[0]


def _run_bench(models: list[str], data: Any, out_dir: Path, *, log: Any, **params: Any) -> dict[str, Any]:
    """Bench ``models`` on ``data`` (a data file or a dataset) and write bench.json +
    report.html in ``out_dir``; returns the bench document."""
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
    reference, ssh = _reference(params["reference"], artifacts, host), None
    if host != "local":
        from edgekd.remote.ssh import SshOptions

        ssh = SshOptions(known_hosts=params["known_hosts"], identity=params["identity"])
    teacher_path = params["teacher_path"]
    from edgekd.api import inputs

    dataset, data_path = inputs.evaluation_data(data, "data")
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
            dataset=dataset,
        )
    except EdgeKDError as exc:
        if target is not None:  # the runner knows the shape, not where it came from
            where = f"target {target.name}'s input_shape ({resources.resolve('targets', target_name)})"
            exc.message = exc.message.replace("the target's input_shape", where)
        raise


@with_thread_policy
def bench(
    models: str | Path | list[str | Path] | dict[str, str | Path],
    *,
    data: Any,
    target: str | Path | None = None,
    out: str | Path | None = None,
    name: str = "bench",
    threads: int | None = None,
    min_runs: int = 200,
    min_seconds: float = 1.0,
    reference: str | None = None,
    teacher: str | Path | None = None,
    host: str | None = None,
    keep_going: bool = False,
    known_hosts: str | Path | None = None,
    identity: str | Path | None = None,
    remote_python: str = "python3",
    log: Any = None,
) -> BenchReport:
    """Benchmark each model: latency at batch 1, accuracy overall, per class and per SNR.

    Args:
        models: files (``.pt`` runs in PyTorch, ``.onnx`` in ONNX Runtime, ``.xml`` in
            OpenVINO), ``"BACKEND/PRECISION=FILE"`` specs, or ``{"openvino/fp32": file}``.
        data: a dataset, a DataLoader or a data file; its test split is scored (every sample of
            a dataset without splits).
        target: a target profile (name or YAML): each runtime's settings, threads and host.
        out: the folder for bench.json and report.html (None: a temporary one, removed).
        reference: the entry agreement and accuracy drop are measured against (default:
            ``torch/fp32`` when benched here, else ``onnxruntime/fp32``, else the first FP32 entry).
        teacher: also record this teacher's accuracy on the same frames.
        host: ``local`` or ``ssh://user@device[:port]`` (default: the target's host, else local);
            ``known_hosts``, ``identity``, ``remote_python``: how to reach it.
        keep_going: record models that fail to load or run as failed entries instead of raising.

    Returns:
        a :class:`BenchReport` (the bench.json document, its path).
    """
    import tempfile

    from edgekd.api.distill_api import default_log

    if isinstance(models, (str, Path)):
        models = [models]
    specs = [f"{k}={v}" for k, v in models.items()] if isinstance(models, dict) else [str(m) for m in models]
    params = dict(
        name=name,
        threads=threads,
        min_runs=min_runs,
        min_seconds=min_seconds,
        reference=reference,
        teacher_path=Path(teacher) if teacher is not None else None,
        target_name=str(target) if target is not None else None,
        host=host,
        keep_going=keep_going,
        known_hosts=Path(known_hosts) if known_hosts is not None else None,
        identity=Path(identity) if identity is not None else None,
        remote_python=remote_python,
    )
    from edgekd.artifacts import rollback_on_failure

    with rollback_on_failure():
        if out is not None:
            doc = _run_bench(specs, data, Path(out), log=default_log(log), **params)
            return BenchReport(doc, Path(out) / "bench.json")
        with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
            return BenchReport(_run_bench(specs, data, Path(tmp), log=default_log(log), **params))


__all__ = ["artifacts_from_specs", "bench"]
