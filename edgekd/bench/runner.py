"""Bench harness: load each candidate, time it, score it, and build the bench document.

A runtime that is not available here becomes a "skipped" entry with its reason; an
error while running one candidate becomes a "failed" entry with a one-line reason,
and the others still run. At the end a failed entry (or a bench where nothing ran) raises
:class:`BenchFailed` listing every reason, unless ``BenchConfig.keep_going`` asks to record
them: a bench in which a requested model failed never looks like success. Nothing is
ever estimated or filled in for a missing runtime.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import BACKENDS, PRECISIONS
from edgekd.backends.profile_options import resolve_threads
from edgekd.bench.accuracy import agreement, frame_shape
from edgekd.bench.entries import BenchCandidate, artifact_record
from edgekd.bench.executor import Executor, LocalExecutor
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.schema import BENCH_SCHEMA
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, EdgeKDError, ShapeError
from edgekd.registry import suggestion

__all__ = [  # the bench's public face; entries and executors live in their own modules
    "BenchCandidate",
    "BenchConfig",
    "BenchFailed",
    "artifact_record",
    "bench_document",
    "check_frames_fit",
    "require_measured",
    "run_bench",
]


@dataclasses.dataclass
class BenchConfig:
    """The ``bench`` config section.

    ``backends`` lists the entries to run as ``<backend>/<precision>`` ids; the caller
    maps each to an artifact (a :class:`BenchCandidate`). ``threads`` (None = runtime
    default) applies to every backend; ``accuracy_batch_size`` is the batch of the
    accuracy pass for dynamic-batch models. ``roofline`` measures the machine's float32
    GEMM peak once per bench (about 0.3 s) so each entry reports its fraction of it.
    ``keep_going``: an entry that fails is recorded as "failed" and the bench still returns;
    by default a failed entry (or a bench in which nothing ran) raises :class:`BenchFailed`
    before anything is written. ``input_shape`` (batch first, e.g. ``[1, 2, 128]``, from a
    target profile): every model's input and the data's frames must fit it.
    """

    latency: LatencyConfig = dataclasses.field(default_factory=LatencyConfig)
    threads: int | None = None
    accuracy_batch_size: int = 256
    roofline: bool = True
    keep_going: bool = False
    input_shape: list[int] | None = None
    backends: list[str] = dataclasses.field(
        default_factory=lambda: ["torch/fp32", "onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32"]
    )

    def validate(self) -> None:
        self.latency.validate()
        resolve_threads(self.threads, source="bench.threads")
        if self.accuracy_batch_size < 1:
            raise ConfigError(f"bench.accuracy_batch_size must be >= 1, got {self.accuracy_batch_size}")
        if not self.backends:
            raise ConfigError("bench.backends is empty", hint="list entries such as onnxruntime/fp32")
        for item in self.backends:
            backend, sep, precision = item.partition("/")
            if not sep:
                raise ConfigError(
                    f"bench.backends entry {item!r} is not <backend>/<precision>",
                    hint="write e.g. onnxruntime/int8",
                )
            if backend not in BACKENDS:
                raise ConfigError(
                    f"bench.backends entry {item!r}: unknown backend {backend!r}",
                    hint=suggestion(backend, BACKENDS.names(), "backends"),
                )
            if precision not in PRECISIONS:
                raise ConfigError(
                    f"bench.backends entry {item!r}: unknown precision {precision!r}",
                    hint=suggestion(precision, list(PRECISIONS), "precisions"),
                )
        if len(set(self.backends)) != len(self.backends):
            raise ConfigError("bench.backends lists an entry twice")
        if self.input_shape is not None and (
            len(self.input_shape) < 2 or any(d < 1 for d in self.input_shape)
        ):
            raise ConfigError(
                f"bench.input_shape must be [batch, *frame] of positive sizes, got {self.input_shape}"
            )


class BenchFailed(EdgeKDError):
    """Requested entries failed (or nothing ran): no bench document is returned (exit 2)."""


def require_measured(entries: list[dict[str, Any]], cfg: BenchConfig, dataset_name: str) -> None:
    """Raise :class:`BenchFailed` naming each entry that did not run, its model file and the data
    it was given (the fault may be either's), unless ``cfg.keep_going``: any "failed" entry, or
    every entry when none is "ok" (all skipped). A "skipped" entry beside measured ones (a
    runtime not installed here) is only reported."""
    if cfg.keep_going:
        return
    bad = [e for e in entries if e["status"] == "failed"]
    if not any(e["status"] == "ok" for e in entries):
        bad = [e for e in entries if e["status"] != "ok"]
    if not bad:
        return
    details = "; ".join(_failure_line(e) for e in bad)
    raise BenchFailed(
        f"{len(bad)} of {len(entries)} bench entries did not run on {dataset_name}, so no bench result "
        f"was written: {details}",
        hint="fix or leave out those models, or pass --keep-going (bench.keep_going: true in a recipe) "
        "to record them as failed",
    )


def _failure_line(entry: dict[str, Any]) -> str:
    """``id: reason``, with the model file added when the reason does not name it."""
    path, reason = entry["artifact"]["path"], entry["reason"] or entry["status"]
    cut = reason.rfind(" (fix: ")
    if cut >= 0 and reason.endswith(")"):  # the entry's own hint, bracketed apart from ours
        reason = f"{reason[:cut]} [fix: {reason[cut + 7 : -1]}]"
    name = Path(path).name
    return f"{entry['id']}: {reason}" if name in reason else f"{entry['id']} ({path}): {reason}"


def check_frames_fit(dataset: ArrayDataset, cfg: BenchConfig, dataset_name: str) -> None:
    """ShapeError when the data's frames are not the target's ``cfg.input_shape`` frames."""
    if cfg.input_shape is None:
        return
    frame = list(frame_shape(dataset))
    if frame != list(cfg.input_shape[1:]):
        raise ShapeError(
            f"{dataset_name}: frames of shape {frame} do not fit the target's input_shape {cfg.input_shape}",
            hint="bench on the data the target's model takes, or fix the target's input_shape",
        )


def run_bench(
    candidates: list[BenchCandidate],
    dataset: ArrayDataset,
    cfg: BenchConfig,
    *,
    name: str,
    out_dir: Path,
    reference_id: str = "torch/fp32",
    log: Callable[[str], None] | None = None,
    dataset_name: str = "dataset",
    split: str = "test",
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Bench every candidate on ``dataset`` and return the bench document (not yet written).

    Args:
        candidates: entries to run, in order; ids must be unique.
        dataset: the evaluation frames (usually the test split), x float32 [N, C, L].
        cfg: latency settings, threads, accuracy batch size.
        name: the bench's title (model or run name).
        out_dir: the folder bench.json will be written to; artifact paths inside it are
            recorded relative to it.
        reference_id: the entry whose predictions the others' agreement is measured against;
            agreement is null when that entry is absent or did not run.
        log: receives one progress line per step (e.g. ``console.print``).
        dataset_name, split: recorded in the document's ``dataset`` section.
        executor: where the candidates run (default: here, :class:`LocalExecutor`; a device
            over SSH: :func:`edgekd.remote.executor_for`).
    """
    cfg.validate()
    say = log or (lambda _line: None)
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"bench candidates repeat an id: {', '.join(ids)}")
    check_frames_fit(dataset, cfg, dataset_name)
    measured = (executor or LocalExecutor()).measure(candidates, dataset, cfg, Path(out_dir), say)
    require_measured(measured.entries, cfg, dataset_name)
    return bench_document(
        measured.entries,
        measured.predictions,
        dataset,
        cfg,
        name=name,
        reference_id=reference_id,
        environment=measured.environment,
        roofline=measured.roofline,
        dataset_name=dataset_name,
        split=split,
    )


def bench_document(
    entries: list[dict[str, Any]],
    predictions: dict[str, np.ndarray],
    dataset: ArrayDataset,
    cfg: BenchConfig,
    *,
    name: str,
    reference_id: str,
    environment: dict[str, Any],
    roofline: dict[str, Any] | None,
    dataset_name: str,
    split: str,
) -> dict[str, Any]:
    """The bench document from finished entries; fills ``agreement_with_reference`` from
    ``predictions`` (entry id -> int64 [N]) of the entries that ran."""
    reference = predictions.get(reference_id)
    for entry in entries:
        if reference is not None and entry["id"] in predictions:
            entry["agreement_with_reference"] = agreement(predictions[entry["id"]], reference)
    snrs = sorted(int(s) for s in np.unique(dataset.snr)) if dataset.snr is not None else []
    return {
        "schema": BENCH_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": name,
        "environment": environment,
        "dataset": {
            "name": dataset_name,
            "split": split,
            "n": len(dataset),
            "input_shape": list(frame_shape(dataset)),
            "class_names": list(dataset.class_names),
            "snrs": snrs,
        },
        "settings": {
            **to_dict(cfg.latency),
            "threads": cfg.threads,
            "accuracy_batch_size": cfg.accuracy_batch_size,
        },
        "roofline": roofline,
        "reference": reference_id,
        "entries": entries,
    }
