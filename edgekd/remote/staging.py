"""The job folder a device runs: job.json, frames.npz, the models and the runtime package.

The runtime package (:mod:`edgekd.runtime`, numpy and the runtime only) is copied in as the
package folder :data:`PACKAGE`, and the device runs ``python3 -m edgekd_runtime.device_runner
JOB_DIR`` with the job folder on ``PYTHONPATH``: the code that times a remote entry is the
code that times a local one, not a copy of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS
from edgekd.bench.entries import BenchCandidate, artifact_files, empty_entry, latency_batch, session_options
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import EdgeKDError
from edgekd.runtime import device_runner

#: The package name the runtime files take on the device (apart from any edgekd there).
PACKAGE = "edgekd_runtime"


def remote_runtimes() -> list[str]:
    """Registered backends the device runner opens."""
    return [name for name in BACKENDS if BACKENDS.get(name).remote]


def candidate_settings(cand: BenchCandidate, cfg: Any) -> dict[str, Any]:
    """The runtime settings the device applies, resolved here by the backend's own code."""
    options = session_options(cand, cfg)
    options.validate()
    return BACKENDS.get(cand.backend).remote_settings(options)


def copy_runtime_package(staging: Path) -> Path:
    """Copy the runtime package's modules into ``staging/edgekd_runtime``; that folder."""
    folder = staging / PACKAGE
    folder.mkdir()
    for source in sorted(device_runner.PACKAGE_DIR.glob("*.py")):
        shutil.copyfile(source, folder / source.name)
    return folder


def _decide_here(cand: BenchCandidate, cfg: Any, staging: Path) -> tuple[dict[str, Any] | None, Any]:
    """(an entry decided without the device, or None; the settings otherwise): a runtime the
    runner cannot open is skipped, a missing artifact or a bad option fails."""
    entry = empty_entry(cand, staging, cfg)
    runtimes = remote_runtimes()
    if cand.backend not in runtimes:
        entry.update(
            status="skipped",
            reason=f"{cand.backend} does not run on a remote device "
            f"(the device runner opens {' and '.join(runtimes)})",
        )
        return entry, None
    if not [f for f in artifact_files(Path(cand.artifact)) if f.is_file()]:
        entry.update(reason=f"{cand.backend} artifact {cand.artifact} does not exist (fix: re-export)")
        return entry, None
    try:
        return None, candidate_settings(cand, cfg)
    except EdgeKDError as exc:
        entry.update(reason=exc.one_line())
        return entry, None


def stage_job(
    candidates: list[BenchCandidate], dataset: ArrayDataset, cfg: Any, staging: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Write job.json, frames.npz, the models and the runtime package into ``staging``.

    Returns (the job, entries decided here by id: runtimes the runner cannot open and
    missing artifacts become skipped/failed entries without a trip to the device).
    """
    decided: dict[str, dict[str, Any]] = {}
    jobs: list[dict[str, Any]] = []
    for i, cand in enumerate(candidates):
        entry, settings = _decide_here(cand, cfg, staging)
        if entry is not None:
            decided[cand.id] = entry
            continue
        for f in artifact_files(Path(cand.artifact)):  # an IR keeps its .xml/.bin pair under one stem
            if f.is_file():
                shutil.copyfile(f, staging / f"model{i}{f.suffix.lower()}")
        model = f"model{i}{Path(cand.artifact).suffix.lower()}"
        jobs.append(
            {
                "id": cand.id,
                "runtime": cand.backend,
                "model": model,
                "name": str(cand.artifact),
                "options": settings,
            }
        )
    lat = to_dict(cfg.latency)
    job = {
        "protocol": device_runner.RUNNER_PROTOCOL,
        "latency": lat,
        "accuracy_batch_size": cfg.accuracy_batch_size,
        "pin_cpus": lat.get("pin_cpus"),
        "roofline": cfg.roofline,
        "candidates": jobs,
    }
    (staging / "job.json").write_text(json.dumps(job), encoding="utf-8")
    np.savez(staging / "frames.npz", x=dataset.x, sample=latency_batch(dataset.x, cfg.latency.batch_size))
    copy_runtime_package(staging)
    return job, decided
