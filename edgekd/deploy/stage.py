"""The ``deploy:`` section of a recipe and the pipeline stage that runs it.

Off by default (deploying builds and measures up to seven candidates, minutes on a small
CPU). With ``enabled: true`` the recipe's student is deployed after the bench, for
``target`` (default: the gate's target), into ``OUT/deploy/``::

    deploy:
      enabled: true
      target: x86-cpu-onnxruntime-int8
      runtimes: [onnxruntime, openvino]   # default: every runtime the device allows
      max_accuracy_drop: 0.01             # default: the target's budget
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.bench.latency import LatencyConfig
from edgekd.errors import ConfigError


@dataclasses.dataclass
class DeploySection:
    """``target`` None: the gate's target. ``calibration`` None: chosen from the data (see
    :class:`edgekd.deploy.run.DeployOptions`). ``threads`` None: the target's."""

    enabled: bool = False
    target: str | None = None
    runtimes: list[str] | None = None
    calibration: str | None = None
    max_accuracy_drop: float | None = None
    threads: int | None = None
    latency: LatencyConfig = dataclasses.field(default_factory=LatencyConfig)

    def validate(self) -> None:
        self.latency.validate()
        if self.max_accuracy_drop is not None and not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ConfigError(
                f"deploy.max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}",
                hint="it is a fraction: 0.01 allows one point",
            )


def stage_deploy(
    section: DeploySection,
    student: Path,
    data: Path,
    out_dir: Path,
    *,
    default_target: str | None,
    log: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any] | None:
    """Deploy ``student`` into ``out_dir/deploy``; None when the section is disabled."""
    if not section.enabled:
        return None
    from edgekd.deploy.run import DeployOptions, deploy_student
    from edgekd.targets import load_target

    name = section.target or default_target
    if not name:
        raise ConfigError("deploy.enabled needs a target", hint="set deploy.target or gate.target")
    opts = DeployOptions(
        out_dir=out_dir / "deploy",
        runtimes=section.runtimes,
        calibration=section.calibration,
        latency=section.latency,
        threads=section.threads,
        max_accuracy_drop=section.max_accuracy_drop,
    )
    return deploy_student(student, load_target(name), data, opts, log=log)
