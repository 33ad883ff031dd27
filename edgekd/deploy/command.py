"""``edgekd deploy`` behind its options: the target, the SSH settings and the deploy options
from the command line, one deploy, and the table and result it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.deploy.report import print_deploy
from edgekd.errors import EdgeKDError


def deploy_command(
    student: Path,
    target_name: str,
    data_path: Path,
    *,
    out_dir: Path,
    output: Any,
    host: str | None = None,
    runtimes: str | None = None,
    calibration: str | None = None,
    max_accuracy_drop: float | None = None,
    threads: int | None = None,
    min_runs: int = 200,
    min_seconds: float = 1.0,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    known_hosts: Path | None = None,
    identity: Path | None = None,
    remote_python: str = "python3",
) -> dict[str, Any]:
    """Deploy ``student`` for the target ``target_name`` (a name or YAML) with the command
    line's settings; prints the candidate table (also when no candidate is within budget) and
    the result through ``output`` (:class:`edgekd.cli.common.Output`). ``runtimes`` is a
    comma-separated list. Returns the deploy document."""
    from edgekd.bench.latency import LatencyConfig
    from edgekd.deploy.run import DeployOptions, deploy_student
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
        doc = deploy_student(student, target, data_path, opts, log=output.log)
    except EdgeKDError as exc:
        document = getattr(exc, "document", None)
        if document is not None:  # the table says why every candidate lost
            print_deploy(document, console=output.console())
        raise
    if output.tables:  # with --json the table goes to stderr, for a person watching
        print_deploy(doc, console=output.console())
    output.result(doc, [out_dir / "deploy.json", out_dir / doc["deployed"]["file"]])
    return doc
