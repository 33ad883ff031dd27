"""The multi-stage verbs: ``edgekd.run`` (a whole recipe), ``deploy``, ``search``, ``qat``,
``ensemble`` and ``targets``. Each returns its result; the command line prints it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.api.distill_api import Log, default_log, with_thread_policy
from edgekd.api.results import BenchReport, RunResult, verdict_of


def _ssh(host: str | None, target: Any, known_hosts: Any, identity: Any) -> Any:
    """SSH settings when the work runs on a remote host, else None."""
    if (host or target.host) == "local":
        return None
    from edgekd.remote.ssh import SshOptions

    return SshOptions(
        known_hosts=Path(known_hosts) if known_hosts else None, identity=Path(identity) if identity else None
    )


@with_thread_policy
def run(
    recipe: str | Path,
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    log: Log | None = None,
) -> RunResult | None:
    """Run every stage of ``recipe`` (a YAML file or a built-in name) into ``out`` (default
    ``runs/<recipe name>``); ``overrides`` are ``KEY=VALUE`` recipe values. Returns the bench,
    the gate verdict and the time; None on torchrun ranks other than 0 (their part is done)."""
    from edgekd.artifacts import rollback_on_failure
    from edgekd.distill.checks import resolve_device
    from edgekd.distill.distributed import command_process_group
    from edgekd.pipeline.recipe import load_recipe
    from edgekd.pipeline.runner import run_recipe

    loaded = load_recipe(str(recipe), tuple(overrides))
    out_dir = Path(out) if out is not None else Path("runs") / loaded.name
    # Under torchrun the training stages run on every rank (DDP); rank 0 alone reports.
    device = resolve_device(loaded.distill.train.device)
    with rollback_on_failure(), command_process_group(device) as ctx:
        say = default_log(log) if ctx.is_main else (lambda _msg: None)
        result = run_recipe(loaded, out_dir, say)
    if result is None:
        return None
    gate = result["gate"]
    return RunResult(
        recipe=loaded.name,
        out_dir=out_dir,
        seconds=result["seconds"],
        bench=BenchReport(result["bench"], out_dir / "bench.json"),
        gate=verdict_of(gate) if gate is not None else None,
    )


@dataclasses.dataclass
class DeployResult:
    """The deployed artifact (``path``) and deploy.json's document (every candidate, why it won
    or lost)."""

    document: dict[str, Any]
    path: Path | None

    def print(self, console: Any = None) -> None:
        """The candidates table (what ``edgekd deploy`` prints) on ``console`` (rich)."""
        from edgekd.deploy.report import print_deploy

        print_deploy(self.document, console=console)


@with_thread_policy
def deploy(
    student: str | Path,
    *,
    target: str | Path,
    data: str | Path,
    out: str | Path = "deploy-out",
    host: str | None = None,
    runtimes: Sequence[str] | str | None = None,
    calibration: str | None = None,
    max_accuracy_drop: float | None = None,
    threads: int | None = None,
    min_runs: int = 200,
    min_seconds: float = 1.0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    known_hosts: str | Path | None = None,
    identity: str | Path | None = None,
    remote_python: str = "python3",
    log: Log | None = None,
) -> DeployResult:
    """Build every candidate artifact ``target`` allows from ``student``, measure each on the
    target, keep the fastest within the accuracy budget (``out/deployed.<ext>``).

    Raises:
        EdgeKDError: bad input; or no candidate within budget (exit 1; its ``document`` says why
            each lost).
    """
    from edgekd.artifacts import rollback_on_failure
    from edgekd.bench.latency import LatencyConfig
    from edgekd.deploy.run import DeployOptions, deploy_student
    from edgekd.targets import load_target

    profile = load_target(str(target))
    if isinstance(runtimes, str):
        runtimes = [r.strip() for r in runtimes.split(",") if r.strip()]
    opts = DeployOptions(
        out_dir=Path(out),
        cache_dir=Path(cache_dir) if cache_dir else None,
        host=host,
        ssh=_ssh(host, profile, known_hosts, identity),
        remote_python=remote_python,
        runtimes=list(runtimes) if runtimes else None,
        calibration=calibration,
        latency=LatencyConfig(min_runs=min_runs, min_seconds=min_seconds),
        threads=threads,
        max_accuracy_drop=max_accuracy_drop,
        use_cache=use_cache,
    )
    opts.latency.validate()
    with rollback_on_failure():
        doc = deploy_student(Path(student), profile, Path(data), opts, log=default_log(log))
    return DeployResult(doc, Path(out) / doc["deployed"]["file"])


@dataclasses.dataclass
class SearchResult:
    """The search document (every candidate's latency, proxy score, short-training accuracy)
    and the winner distilled in full (``student``)."""

    document: dict[str, Any]
    student: Path
    out_dir: Path

    def print(self, console: Any = None) -> None:
        """The candidates table and notes (what ``edgekd search`` prints) on ``console`` (rich)."""
        from edgekd.search.report import print_search

        print_search(self.document, console=console)


@with_thread_policy
def search(
    teacher: str | Path,
    *,
    data: str | Path,
    target: str | Path | None = None,
    latency_budget_ms: float | None = None,
    family: str | None = None,
    grid: dict[str, list[Any]] | Sequence[str] = (),
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    out: str | Path = "runs/search",
    host: str | None = None,
    threads: int | None = None,
    known_hosts: str | Path | None = None,
    identity: str | Path | None = None,
    remote_python: str = "python3",
    log: Log | None = None,
) -> SearchResult:
    """Search the student's shape on the target device within its latency budget, then distil
    the winner in full (see ``edgekd search --help``). ``grid``: ``{"width_mult": [0.5, 1.0]}``
    or ``["width_mult=0.5,1.0"]``."""
    from edgekd.artifacts import require_file, rollback_on_failure
    from edgekd.search.command import parse_grid, run_search_and_distill, search_settings
    from edgekd.targets import load_target

    parsed = grid if isinstance(grid, dict) else parse_grid(tuple(grid))
    section, distill_section, target_name = search_settings(
        recipe, tuple(overrides), family=family, grid=parsed, budget=latency_budget_ms, epochs=epochs
    )
    profile = load_target(str(target) if target is not None else target_name)
    teacher = require_file(Path(teacher), "teacher", hint="pass the trained teacher .pt (or .onnx)")
    data = require_file(Path(data), "dataset", hint="pass the data.npz (or data.json) to train on")
    with rollback_on_failure():
        doc, student = run_search_and_distill(
            section, distill_section, teacher=teacher, data=data, target=profile, out_dir=Path(out),
            host=host, threads=threads, ssh=_ssh(host, profile, known_hosts, identity),
            remote_python=remote_python, log=default_log(log),
        )  # fmt: skip
    return SearchResult(doc, student, Path(out))


@with_thread_policy
def qat(
    student: str | Path,
    *,
    teacher: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    lr: float | None = None,
    activations: str | None = None,
    log: Log | None = None,
) -> Any:
    """Quantization-aware distillation of a trained ``student`` checkpoint against ``teacher``:
    ``student.qat.onnx`` (Q/DQ) and a report of FP32, PTQ INT8 and QAT INT8 accuracy. Returns
    the QAT result (``onnx_path``, ``table()``)."""
    from edgekd.artifacts import require_file, rollback_on_failure
    from edgekd.qat.files import load_qat_config, qat_from_files

    named = {"train.epochs": epochs, "train.lr": lr, "activations": activations}
    extra = tuple(f"{key}={value}" for key, value in named.items() if value is not None)
    cfg = load_qat_config(Path(config) if config else None, (*extra, *overrides))
    student = require_file(Path(student), "student checkpoint", hint="run `edgekd distill` first")
    teacher = require_file(
        Path(teacher), "teacher", hint="pass the teacher checkpoint written by `edgekd distill`"
    )
    data = require_file(Path(data), "dataset", hint="pass the data.npz written by `edgekd distill`")
    with rollback_on_failure():
        return qat_from_files(
            student, teacher, data, Path(out) if out else student.parent, cfg, default_log(log)
        )


def ensemble(members: Sequence[str | Path], *, out: str | Path, log: Log | None = None) -> Path:
    """One teacher checkpoint predicting the mean logits of ``members`` (trained on the same
    classes and input shape); returns its path."""
    from edgekd.artifacts import read_manifest, rollback_on_failure
    from edgekd.models.checkpoint import combine_checkpoints

    with rollback_on_failure():
        path = combine_checkpoints([Path(m) for m in members], Path(out))
    metrics = read_manifest(path)["metrics"]
    default_log(log)(
        f"ensemble: {len(members)} members, {metrics['params']:,} parameters, {metrics['macs']:,} MACs"
    )
    return path


def targets(name: str | Path | None = None) -> Any:
    """The target profile ``name`` (a built-in name or YAML) resolved, or every built-in one."""
    from edgekd import resources
    from edgekd.targets import load_target

    if name is not None:
        return load_target(str(name))
    return [load_target(n) for n in resources.builtin_names("targets")]


__all__ = ["DeployResult", "SearchResult", "deploy", "ensemble", "qat", "run", "search", "targets"]
