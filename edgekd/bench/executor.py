"""Where a bench's candidates run: an executor times and scores them, the harness builds the document.

:class:`LocalExecutor` opens each candidate here through the backends; the remote executor
(:class:`edgekd.remote.executor.SshExecutor`) ships them with the runtime package to a
device. Both return a :class:`Measured`, so :func:`edgekd.bench.runner.run_bench` judges and
records local and remote entries alike, and the bench never imports the remote side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekd.backends.base import BACKENDS, Session, session_from_artifact
from edgekd.bench.accuracy import evaluate_accuracy, latency_frames
from edgekd.bench.entries import (
    BenchCandidate,
    complete_entry,
    empty_entry,
    log_entry,
    one_line,
    session_options,
)
from edgekd.bench.environment import fingerprint
from edgekd.bench.latency import measure_latency
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, RuntimeUnavailable, ShapeError
from edgekd.runtime.inputs import input_mismatch
from edgekd.runtime.machine import PeakMemory, PinnedCpus, gemm_peak

Say = Callable[[str], None]


@dataclasses.dataclass
class Measured:
    """What an executor hands back: one entry per candidate (in order), the predictions (int64
    [N]) of the entries that ran, the machine's fingerprint and its GEMM peak (or None)."""

    entries: list[dict[str, Any]]
    predictions: dict[str, np.ndarray]
    environment: dict[str, Any]
    roofline: dict[str, Any] | None


class Executor(Protocol):
    """Runs bench candidates somewhere and measures them with THE timing loop."""

    def measure(
        self, candidates: list[BenchCandidate], dataset: Any, cfg: Any, out_dir: Path, say: Say
    ) -> Measured: ...


def _open_checked(cand: BenchCandidate, cfg: Any, sample: np.ndarray) -> Session:
    """The candidate's session, refused before any timing when its input cannot take ``sample``
    (float32 [B, *frame]) or the target's ``cfg.input_shape``; both errors name the model file."""
    session = session_from_artifact(cand.backend, cand.artifact, session_options(cand, cfg))
    session.check_input(sample)
    if cfg.input_shape is not None:
        why = input_mismatch(session.input_shape, cfg.input_shape, "the target's input_shape")
        if why is not None:
            raise ShapeError(f"{cand.artifact}: {why}", hint="bench the model built for this target")
    return session


def bench_one(
    cand: BenchCandidate, dataset: ArrayDataset, cfg: Any, out_dir: Path, peak_gflops: float | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Open, time and score one candidate here; never raises (a failure is a status with a reason)."""
    entry = empty_entry(cand, out_dir, cfg)
    try:
        # Asked first: a runtime that is not installed usually also left no artifact behind,
        # and "not installed" is the cause worth reporting.
        reason = BACKENDS.get(cand.backend).unavailable_reason()
        if reason is not None:
            raise RuntimeUnavailable(reason)
        sample = latency_frames(dataset, cfg.latency.batch_size)
        # Session creation, warm-up and timing: the memory a deployment needs to serve requests.
        with PeakMemory() as memory:
            session = _open_checked(cand, cfg, sample)
            stats = measure_latency(session, sample, cfg.latency)
        report = evaluate_accuracy(session, dataset, cfg.accuracy_batch_size)
    except RuntimeUnavailable as exc:
        entry.update(status="skipped", reason=exc.one_line())
        return entry, None
    except Exception as exc:  # one broken candidate must not sink the whole bench
        entry.update(status="failed", reason=one_line(exc))
        return entry, None
    complete_entry(
        entry,
        latency=stats.to_dict(),
        load_ms=session.load_seconds * 1e3,
        executed_precision=session.executed_precision,
        accuracy=report.to_dict(),
        peak_memory_mib=memory.delta_mib,
        batch_size=cfg.latency.batch_size,
        peak_gflops=peak_gflops,
        input_shape=session.input_shape,
    )
    return entry, report.predictions


class LocalExecutor:
    """Measure every candidate in this process, pinned to ``cfg.latency.pin_cpus`` when given."""

    def measure(
        self, candidates: list[BenchCandidate], dataset: Any, cfg: Any, out_dir: Path, say: Say
    ) -> Measured:
        try:
            pinned = PinnedCpus(cfg.latency.pin_cpus)
            pinned.__enter__()
        except ValueError as exc:
            raise ConfigError(str(exc), hint="list CPU ids this process may use (see nproc)") from None
        entries: list[dict[str, Any]] = []
        predictions: dict[str, np.ndarray] = {}
        try:
            roofline = gemm_peak() if cfg.roofline else None
            if roofline:
                say(f"machine peak: {roofline['peak_gflops']:.1f} GFLOP/s (float32 GEMM, numpy)")
            peak = roofline["peak_gflops"] if roofline else None
            for i, cand in enumerate(candidates, 1):
                say(f"[{i}/{len(candidates)}] {cand.id}: {cand.artifact}")
                entry, preds = bench_one(cand, dataset, cfg, Path(out_dir), peak)
                if preds is not None:
                    predictions[cand.id] = preds
                log_entry(say, entry)
                entries.append(entry)
        finally:
            pinned.__exit__()
        return Measured(entries, predictions, fingerprint(), roofline)
