"""One bench entry: the candidate, its artifact record, and the entry dict from empty to measured.

Shared by every executor (local and remote), so an entry looks the same wherever it ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import sha256_file
from edgekd.backends.base import SessionOptions
from edgekd.errors import EdgeKDError
from edgekd.runtime.machine import roofline_fields


@dataclasses.dataclass
class BenchCandidate:
    """One entry to bench: a backend, the precision label, the artifact it opens.

    ``params``/``macs`` (counts, from the model stage) are copied into the entry.
    ``options`` overrides the session options; by default ``SessionOptions(threads=
    cfg.threads, precision=precision)``.
    """

    backend: str
    precision: str
    artifact: Path
    params: int | None = None
    macs: int | None = None
    options: SessionOptions | None = None

    @property
    def id(self) -> str:
        return f"{self.backend}/{self.precision}"


def artifact_files(path: Path) -> list[Path]:
    """Files that make up an artifact: an OpenVINO IR is its .xml and its .bin."""
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        return [path, path.with_suffix(".bin")]
    return [path]


def artifact_record(path: Path, out_dir: Path) -> dict[str, Any]:
    """``{"path", "sha256", "size_bytes"}``; path relative to ``out_dir`` when inside it.
    For a multi-file artifact (IR) the hash covers the files' hashes in order and the size
    their sum, so the size is what a device must store."""
    path = Path(path)
    try:
        shown = os.path.relpath(path.resolve(), Path(out_dir).resolve())
        if shown.startswith(".."):
            shown = str(path.resolve())
    except ValueError:  # another drive on Windows
        shown = str(path.resolve())
    files = [f for f in artifact_files(path) if f.is_file()]
    if not files:
        return {"path": shown, "sha256": None, "size_bytes": None}
    if len(files) == 1:
        digest = sha256_file(files[0])
    else:
        digest = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
    return {"path": shown, "sha256": digest, "size_bytes": sum(f.stat().st_size for f in files)}


def one_line(exc: BaseException) -> str:
    """An edgekd error's own line, else ``Type: first line`` of the message."""
    if isinstance(exc, EdgeKDError):
        return exc.one_line()
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def latency_batch(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` real frames of ``x`` (cycled when there are fewer)."""
    return np.ascontiguousarray(x[np.arange(batch_size) % len(x)])


def session_options(cand: BenchCandidate, cfg: Any) -> SessionOptions:
    """The options a candidate's session opens with: its own (already resolved by
    :func:`edgekd.backends.profile_options.options_for_entry`), else ``bench.threads``."""
    options = cand.options or SessionOptions(precision=cand.precision)
    if cfg is not None and options.threads is None and cfg.threads is not None:
        options = dataclasses.replace(options, threads=cfg.threads)
    return options


def empty_entry(cand: BenchCandidate, out_dir: Path, cfg: Any = None) -> dict[str, Any]:
    """A "failed" entry with every measured field null (the caller fills status and reason)."""
    options = session_options(cand, cfg)
    return {
        "id": cand.id,
        "backend": cand.backend,
        "precision": cand.precision,
        "executed_precision": None,
        "status": "failed",
        "reason": None,
        "artifact": artifact_record(cand.artifact, out_dir),
        "params": cand.params,
        "macs": cand.macs,
        "load_ms": None,
        "latency_ms": None,
        "noisy": None,
        "accuracy": None,
        "agreement_with_reference": None,
        "peak_memory_mib": None,
        "achieved_gflops": None,
        "fraction_of_peak": None,
        # What the session was asked for (from the target profile, --threads or defaults),
        # so a figure can be reproduced with the same runtime settings.
        "session_options": {"threads": options.threads, "device": options.device, "extra": options.extra},
    }


def complete_entry(
    entry: dict[str, Any],
    *,
    latency: dict[str, Any],
    load_ms: float,
    executed_precision: str,
    accuracy: dict[str, Any],
    peak_memory_mib: float | None,
    batch_size: int,
    peak_gflops: float | None,
    input_shape: Any = None,
) -> None:
    """Fill an entry that ran: ``latency`` is :func:`latency_summary`'s dict (its ``noisy``
    moves to the entry), ``accuracy`` an :meth:`AccuracyReport.to_dict`, ``input_shape`` the
    model's input (batch first, None for a dynamic axis) when known."""
    latency = dict(latency)
    noisy = latency.pop("noisy")
    entry.update(
        status="ok",
        reason=None,
        executed_precision=executed_precision,
        load_ms=load_ms,
        latency_ms=latency,
        noisy=noisy,
        accuracy=accuracy,
        peak_memory_mib=peak_memory_mib,
        **roofline_fields(entry.get("macs"), batch_size, latency["p50"], peak_gflops),
    )
    if input_shape is not None:
        entry["input_shape"] = [None if d is None else int(d) for d in input_shape]


def log_entry(say: Callable[[str], None], entry: dict[str, Any]) -> None:
    """One progress line for a finished entry."""
    if entry["status"] != "ok":
        say(f"    {entry['status']}: {entry['reason']}")
        return
    lat, acc = entry["latency_ms"], entry["accuracy"]
    say(
        f"    p50 {lat['p50']:.3f} ms, accuracy {100 * acc['overall']:.2f}%, "
        f"executes {entry['executed_precision']}" + (" (noisy)" if entry["noisy"] else "")
    )
