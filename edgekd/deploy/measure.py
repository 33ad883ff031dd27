"""Measure candidates with the bench harness (local, or on a device over SSH), cached.

Every candidate goes through :func:`edgekd.bench.runner.run_bench` (measured here, or on a
device over SSH through :func:`edgekd.remote.executor_for`'s executor): the same latency loop
and the same accuracy evaluator as ``edgekd bench``, so a deploy figure and a bench figure
of one artifact are the same measurement. A measurement is cached under a key of the
artifact's sha256, the runtime options, the bench settings, the evaluation data's hash and
the machine's fingerprint (CPU model, ISA flags, usable cores, library versions; for a
remote host its URL), so only what changed is measured again.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekd.artifacts import library_versions
from edgekd.backends.base import SessionOptions
from edgekd.bench.runner import BenchCandidate, BenchConfig, artifact_record
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.deploy.cache import BuildEntry, DeployCache
from edgekd.deploy.candidates import CandidateSpec


@dataclasses.dataclass
class MeasureRequest:
    """One candidate to measure: its spec, its built artifact and the session options."""

    spec: CandidateSpec
    artifact: BuildEntry
    options: SessionOptions


def machine_fingerprint(host: str) -> dict[str, Any]:
    """What must match for a cached measurement to stand for a new one.

    Local: CPU model, logical and usable cores, ISA flags, OS machine type and library
    versions. Remote: the host URL (the device is only reached when something is measured).
    """
    if host != "local":
        return {"host": host}
    from edgekd.runtime.machine import cpu_fingerprint

    return {"cpu": cpu_fingerprint(), "machine": platform.machine(), "libraries": library_versions()}


def measurement_parts(
    req: MeasureRequest, cfg: BenchConfig, data_sha256: str, machine: dict[str, Any]
) -> dict[str, Any]:
    return {
        "artifact_sha256": req.artifact.sha256,
        "candidate": req.spec.id,
        "options": dataclasses.asdict(req.options),
        "bench": {
            "latency": to_dict(cfg.latency),
            "threads": cfg.threads,
            "accuracy_batch_size": cfg.accuracy_batch_size,
        },
        "data_sha256": data_sha256,
        "machine": machine,
    }


def measure_candidates(
    requests: list[MeasureRequest],
    dataset: ArrayDataset,
    data_sha256: str,
    cfg: BenchConfig,
    cache: DeployCache,
    *,
    out_dir: Path,
    host: str = "local",
    ssh: Any = None,
    remote_python: str = "python3",
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[dict[str, dict[str, Any]], dict[str, bool], dict[str, Any] | None]:
    """Bench entries by candidate id, whether each came from the cache, and the environment of
    the fresh measurements (None when every one was cached).

    Uncached candidates run in one bench call, in catalogue order; their entries are stored.
    """
    machine = machine_fingerprint(host)
    entries: dict[str, dict[str, Any]] = {}
    cached: dict[str, bool] = {}
    fresh: list[tuple[MeasureRequest, str, dict[str, Any]]] = []
    for req in requests:
        parts = measurement_parts(req, cfg, data_sha256, machine)
        key = cache.measurement_key(parts)
        entry = cache.load_measurement(key)
        if entry is None:
            fresh.append((req, key, parts))
            continue
        entry["artifact"] = artifact_record(req.artifact.path, out_dir)
        entries[req.spec.id], cached[req.spec.id] = entry, True
        log(f"measure {req.spec.id}: cached (p50 {entry['latency_ms']['p50']:.3f} ms)")
    if not fresh:
        return entries, cached, None
    candidates = [
        BenchCandidate(
            backend=req.spec.backend,
            precision=req.spec.precision,
            artifact=req.artifact.path,
            options=req.options,
        )
        for req, _key, _parts in fresh
    ]
    # reference_id "": agreement is not computed here; deploy compares labelled accuracy instead.
    common = dict(
        name="deploy", out_dir=out_dir, reference_id="", log=log, dataset_name="deploy", split="test"
    )
    # Deploy judges every candidate, failed ones included: they are recorded, not fatal.
    cfg = dataclasses.replace(cfg, keep_going=True)
    from edgekd.bench.runner import run_bench
    from edgekd.remote import executor_for

    executor = executor_for(host, ssh=ssh, remote_python=remote_python)
    doc = run_bench(candidates, dataset, cfg, executor=executor, **common)
    for (req, key, parts), entry in zip(fresh, doc["entries"], strict=True):
        cache.store_measurement(key, parts, entry)
        entries[req.spec.id], cached[req.spec.id] = entry, False
    return entries, cached, doc["environment"]
