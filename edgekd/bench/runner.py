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
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import sha256_file
from edgekd.backends.base import BACKENDS, PRECISIONS, SessionOptions, session_from_artifact
from edgekd.bench.accuracy import agreement, evaluate_accuracy, frame_shape, latency_frames
from edgekd.bench.environment import fingerprint
from edgekd.bench.latency import LatencyConfig, measure_latency
from edgekd.bench.schema import BENCH_SCHEMA
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, EdgeKDError, RuntimeUnavailable, ShapeError
from edgekd.registry import suggestion
from edgekd.remote.device_runner import PeakMemory, PinnedCpus, gemm_peak, input_mismatch, roofline_fields


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
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"bench.threads must be >= 1 or null, got {self.threads}")
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, EdgeKDError):
        return exc.one_line()
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def latency_batch(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` real frames of ``x`` (cycled when there are fewer)."""
    return np.ascontiguousarray(x[np.arange(batch_size) % len(x)])


def session_options(cand: BenchCandidate, cfg: BenchConfig | None) -> SessionOptions:
    """The options a candidate's session opens with: its own, ``bench.threads`` filling a gap."""
    options = cand.options or SessionOptions(precision=cand.precision)
    if cfg is not None and options.threads is None and cfg.threads is not None:
        options = dataclasses.replace(options, threads=cfg.threads)
    return options


def empty_entry(cand: BenchCandidate, out_dir: Path, cfg: BenchConfig | None = None) -> dict[str, Any]:
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


def _open_checked(cand: BenchCandidate, options: SessionOptions, sample: np.ndarray, cfg: BenchConfig):
    """The candidate's session, refused before any timing when its input cannot take ``sample``
    (float32 [B, *frame]) or the target's ``cfg.input_shape``; both errors name the model file."""
    session = session_from_artifact(cand.backend, cand.artifact, options)
    session.check_input(sample)
    if cfg.input_shape is not None:
        why = input_mismatch(session.input_shape, cfg.input_shape, "the target's input_shape")
        if why is not None:
            raise ShapeError(f"{cand.artifact}: {why}", hint="bench the model built for this target")
    return session


def _bench_one(
    cand: BenchCandidate, dataset: ArrayDataset, cfg: BenchConfig, out_dir: Path, peak_gflops: float | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    entry = empty_entry(cand, out_dir, cfg)
    options = session_options(cand, cfg)
    try:
        # Asked first: a runtime that is not installed usually also left no artifact behind,
        # and "not installed" is the cause worth reporting.
        reason = BACKENDS.get(cand.backend).unavailable_reason()
        if reason is not None:
            raise RuntimeUnavailable(reason)
        sample = latency_frames(dataset, cfg.latency.batch_size)
        # Session creation, warm-up and timing: the memory a deployment needs to serve requests.
        with PeakMemory() as memory:
            session = _open_checked(cand, options, sample, cfg)
            stats = measure_latency(session, sample, cfg.latency)
        report = evaluate_accuracy(session, dataset, cfg.accuracy_batch_size)
    except RuntimeUnavailable as exc:
        entry.update(status="skipped", reason=exc.one_line())
        return entry, None
    except Exception as exc:  # one broken candidate must not sink the whole bench
        entry.update(status="failed", reason=_one_line(exc))
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
    """
    cfg.validate()
    say = log or (lambda _line: None)
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"bench candidates repeat an id: {', '.join(ids)}")
    check_frames_fit(dataset, cfg, dataset_name)
    entries: list[dict[str, Any]] = []
    predictions: dict[str, np.ndarray] = {}
    try:
        pinned = PinnedCpus(cfg.latency.pin_cpus)
        pinned.__enter__()
    except ValueError as exc:
        raise ConfigError(str(exc), hint="list CPU ids this process may use (see nproc)") from None
    try:
        roofline = gemm_peak() if cfg.roofline else None
        if roofline:
            say(f"machine peak: {roofline['peak_gflops']:.1f} GFLOP/s (float32 GEMM, numpy)")
        peak = roofline["peak_gflops"] if roofline else None
        for i, cand in enumerate(candidates, 1):
            say(f"[{i}/{len(candidates)}] {cand.id}: {cand.artifact}")
            entry, preds = _bench_one(cand, dataset, cfg, Path(out_dir), peak)
            if preds is not None:
                predictions[cand.id] = preds
            log_entry(say, entry)
            entries.append(entry)
    finally:
        pinned.__exit__()
    require_measured(entries, cfg, dataset_name)
    return bench_document(
        entries,
        predictions,
        dataset,
        cfg,
        name=name,
        reference_id=reference_id,
        environment=fingerprint(),
        roofline=roofline,
        dataset_name=dataset_name,
        split=split,
    )


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
