"""Each search candidate's latency on the target: built as the target runs it, measured by the bench.

For every candidate (:class:`edgekd.search.space.Candidate`):

    the network at initialisation (seeded) -> a checkpoint in ``work_dir``
      -> the artifact the target runs (deploy's builder: ONNX, OpenVINO IR or INT8, calibrated on
         a few of the given frames; latency does not depend on trained weights)
      -> :func:`edgekd.bench.runner.run_bench` here or on the device over SSH
         (:func:`edgekd.remote.executor_for`): the same latency loop as ``edgekd bench``
      -> a :class:`LatencyResult` (p50/p90, the precision the runtime executed, params, MACs, size)

The runtime/precision pair is the first entry of deploy's catalogue
(:func:`edgekd.deploy.candidates.catalogue`) whose runtime and session precision are the
target's: onnxruntime/int8 builds ``int8-u8``, the simplest INT8 option. A target this machine
cannot measure (runtime missing, a runtime the SSH device runner does not open) is refused up
front in one line; a candidate that fails to build or run becomes a "failed" result with its
one-line reason, and the search goes on.

Cache: one JSON record per measurement in ``cache_dir/latency/<key>.json``, ``key`` the sha256 of
the canonical JSON of everything that decides the figure (see :func:`measurement_parts`). The
target's name, description and budgets are left out on purpose: they do not change a
measurement, so a second target that differs only in its budget reuses every figure. Records
are written atomically and never undone by a failed command (:func:`edgekd.artifacts.durable`);
a record that is unreadable, of another schema or key, or lacks sound figures is ignored and
measured again, never trusted. Failed results are not cached: they are retried next time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.artifacts import durable
from edgekd.bench.latency import LatencyConfig
from edgekd.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from edgekd.backends.base import SessionOptions
    from edgekd.deploy.candidates import CandidateSpec
    from edgekd.search.space import Candidate
    from edgekd.targets import TargetProfile

LATENCY_SCHEMA = "edgekd.search-latency/1"
INIT_SEED = 0  # the candidate's initial weights: reproducible artifacts (latency ignores the values)
CALIBRATION_FRAMES = 32  # INT8 ranges only need to be plausible for a latency measurement
PARITY_FRAMES = 8  # frames each export is checked on (the export step refuses a broken graph)
BENCH_FRAMES = 8  # the bench's accuracy pass runs on these; it is not used by the search


@dataclasses.dataclass
class LatencyResult:
    """One candidate's measurement on the target. Times in milliseconds, ``size_bytes`` the
    artifact the target runs, ``macs`` per sample; ``precision`` the precision the runtime
    reported executing (bench entry ``executed_precision``). ``status`` "failed": ``reason``
    says why in one line and the figures are None. ``cached``: read from the cache."""

    key: str
    status: str
    reason: str | None
    p50_ms: float | None
    p90_ms: float | None
    precision: str | None
    params: int | None
    macs: int | None
    size_bytes: int | None
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def ms(self, statistic: str) -> float | None:
        """The figure a budget of ``statistic`` ("p50" or "p90") is judged on."""
        if statistic not in ("p50", "p90"):
            raise ValueError(f"statistic must be p50 or p90, got {statistic!r}")
        return self.p50_ms if statistic == "p50" else self.p90_ms


def _failed(key: str, reason: str) -> LatencyResult:
    return LatencyResult(key, "failed", reason, None, None, None, None, None, None, cached=False)


def latency_budget(target: TargetProfile, override_ms: float | None) -> tuple[float | None, str, str]:
    """``(budget ms or None, "p50"|"p90", where it came from)``.

    The override (``--latency-budget-ms``, a recipe's ``search.latency_budget_ms``) is a p50
    budget: the plain "a typical call takes at most N ms". Without one, the target's own:
    ``max_p90_ms`` when set (the tail is what a device must meet, and what the gate judges
    first), else ``max_p50_ms``; with neither, no budget ``(None, "p50", "none")``.
    """
    if override_ms is not None:
        if isinstance(override_ms, bool) or not (math.isfinite(override_ms) and override_ms > 0):
            raise ConfigError(
                f"--latency-budget-ms must be a positive number of milliseconds, got {override_ms}",
                hint="e.g. --latency-budget-ms 2.5, or leave it out to use the target's budget",
            )
        return float(override_ms), "p50", "--latency-budget-ms"
    if target.budgets.max_p90_ms is not None:
        return float(target.budgets.max_p90_ms), "p90", "target max_p90_ms"
    if target.budgets.max_p50_ms is not None:
        return float(target.budgets.max_p50_ms), "p50", "target max_p50_ms"
    return None, "p50", "none"


def target_spec(target: TargetProfile, host: str) -> CandidateSpec:
    """The catalogue entry the target runs: its runtime, at its precision, the simplest build.

    Raises:
        ConfigError: no entry runs the target's runtime/precision, or it cannot be measured
            here (runtime not installed, not runnable over SSH, a build deploy does not make).
    """
    from edgekd.deploy.candidates import plan_candidates

    plan = plan_candidates(target, host=host, student_is_onnx=False, runtimes=[target.runtime])
    matching = [
        p for p in plan if p.spec.backend == target.runtime and p.spec.session_precision == target.precision
    ]
    if not matching:
        raise ConfigError(
            f"target {target.name}: no {target.runtime} build runs {target.precision}",
            hint="use a target whose runtime and precision edgekd deploy can build",
        )
    usable = [p for p in matching if p.skip_reason is None]
    if not usable:
        raise ConfigError(
            f"target {target.name}: cannot measure {matching[0].id} latency: {matching[0].skip_reason}",
            hint="measure on a target whose runtime runs here (or on its device over SSH)",
        )
    return usable[0].spec


def _target_content(target: TargetProfile) -> dict[str, Any]:
    """The profile fields that change a measurement (not its name, description nor budgets)."""
    data = target.to_dict()
    for name in ("name", "description", "budgets"):
        data.pop(name, None)
    return data


def measurement_parts(
    candidate: Candidate,
    *,
    target: TargetProfile,
    spec: CandidateSpec,
    options: SessionOptions,
    threads: int | None,
    latency: LatencyConfig,
    frame_shape: tuple[int, ...],
    num_classes: int,
    host: str,
) -> dict[str, Any]:
    """Everything that decides one measurement; the cache key is the sha256 of its canonical JSON.

    The frames' values are not part of it: they only set the INT8 ranges and the bench's
    unused accuracy pass, not how long a call takes; their shape is.
    """
    from edgekd.artifacts import library_versions
    from edgekd.config import to_dict
    from edgekd.deploy.measure import machine_fingerprint

    return {
        "schema": LATENCY_SCHEMA,
        "architecture": {"key": candidate.key(), "model": candidate.model, "kwargs": candidate.kwargs_dict()},
        "num_classes": int(num_classes),
        "frame_shape": [int(d) for d in frame_shape],
        "init_seed": INIT_SEED,
        "calibration_frames": CALIBRATION_FRAMES,
        "target": _target_content(target),
        "spec": dataclasses.asdict(spec),
        "options": dataclasses.asdict(options),
        "threads": threads,
        "latency": to_dict(latency),
        "machine": machine_fingerprint(host),
        "versions": library_versions(),  # the builders' (exporter, quantizer) versions, remote too
    }


class LatencyCache:
    """Measurement records under ``root/latency`` (created on the first write); None: no cache."""

    def __init__(self, root: Path | None) -> None:
        self.folder = Path(root) / "latency" if root is not None else None

    def path(self, key: str) -> Path | None:
        return self.folder / f"{key}.json" if self.folder is not None else None

    def load(self, key: str, candidate_key: str) -> LatencyResult | None:
        """The stored result, or None when absent or not a sound record for ``key``."""
        path = self.path(key)
        if path is None:
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("schema") != LATENCY_SCHEMA or record.get("key") != key:
            return None
        result = record.get("result")
        if not _sound_result(result, candidate_key):
            return None
        return LatencyResult(**{**result, "cached": True})

    def store(self, key: str, parts: dict[str, Any], result: LatencyResult) -> None:
        """Keep an "ok" result; failed ones are measured again next time."""
        path = self.path(key)
        if path is None or result.status != "ok":
            return
        from edgekd.artifacts import atomic_write_json

        stored = {k: v for k, v in result.to_dict().items() if k != "cached"}
        with durable():  # a figure stays valid whether or not the command that measured it succeeds
            atomic_write_json(path, {"schema": LATENCY_SCHEMA, "key": key, "parts": parts, "result": stored})


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sound_result(result: Any, candidate_key: str) -> bool:
    """A measured result of this candidate: finite positive times, p50 <= p90, counts >= 0."""
    fields = {f.name for f in dataclasses.fields(LatencyResult)} - {"cached"}
    if not isinstance(result, dict) or set(result) != fields:
        return False
    if result["key"] != candidate_key or result["status"] != "ok" or result["reason"] is not None:
        return False
    times = [result["p50_ms"], result["p90_ms"]]
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in times):
        return False
    if not 0 < times[0] <= times[1]:
        return False
    if not isinstance(result["precision"], str) or not result["precision"]:
        return False
    return all(_count(result[name]) for name in ("params", "macs", "size_bytes"))


@dataclasses.dataclass
class _Setup:
    """What every candidate of one call shares."""

    target: TargetProfile
    spec: CandidateSpec
    options: SessionOptions
    threads: int | None
    latency: LatencyConfig
    frames: np.ndarray
    num_classes: int
    host: str
    executor: Any
    log: Callable[[str], None]


def measure_latencies(
    candidates: list[Candidate],
    *,
    target: TargetProfile,
    frames: np.ndarray,
    num_classes: int,
    work_dir: Path,
    cache_dir: Path | None,
    host: str | None = None,
    threads: int | None = None,
    ssh: Any = None,
    remote_python: str = "python3",
    latency: LatencyConfig | None = None,
    log: Callable[[str], None] = lambda _l: None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, LatencyResult]:
    """Each candidate's latency on ``target``, keyed by ``Candidate.key()`` (input order).

    Args:
        frames: float32 ``[N, *frame]`` real frames (N >= 1): calibration and bench inputs.
        num_classes: the classifier's output size.
        work_dir: each uncached candidate is built in ``work_dir/<key[:16]>``, removed once measured.
        cache_dir: where records are kept (None: no cache).
        host: "local" or ``ssh://user@host[:port]``; None: the target's host.
        threads: overrides the target's threads (:func:`edgekd.backends.profile_options.resolve_threads`).
        ssh, remote_python: the SSH options and the device's Python (remote hosts only).
        latency: the latency loop's settings; None: the bench's defaults.
        progress: called with (done, total) after each candidate.

    Raises:
        ConfigError / ShapeError: the target cannot be measured here, or the frames do not fit it.
    """
    from edgekd.backends.profile_options import options_for_entry, resolve_threads
    from edgekd.remote import executor_for

    latency = latency or LatencyConfig()
    latency.validate()
    host = host or target.host
    if host != "local":
        from edgekd.remote.ssh import parse_ssh_url

        parse_ssh_url(host)
    frames = _checked_frames(frames, target, num_classes)
    spec = target_spec(target, host)
    resolved = resolve_threads(threads, target)
    setup = _Setup(
        target=target,
        spec=spec,
        options=options_for_entry(target, spec.backend, spec.session_precision, threads),
        threads=resolved,
        latency=latency,
        frames=frames,
        num_classes=num_classes,
        host=host,
        executor=executor_for(host, ssh=ssh, remote_python=remote_python),
        log=log,
    )
    cache = LatencyCache(cache_dir)
    results: dict[str, LatencyResult] = {}
    for done, candidate in enumerate(candidates, start=1):
        key = candidate.key()
        if key not in results:
            results[key] = _one(candidate, setup, cache, Path(work_dir))
        if progress is not None:
            progress(done, len(candidates))
    return results


def _checked_frames(frames: Any, target: TargetProfile, num_classes: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim < 2 or len(frames) < 1:
        raise ShapeError(f"search frames have shape {list(frames.shape)}; expected [N >= 1, *frame]")
    if not np.issubdtype(frames.dtype, np.floating) or not np.isfinite(frames).all():
        raise ShapeError("search frames must be finite floating-point values", hint="check the data set")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    target.check_frames(frames.shape[1:], "search frames")
    return np.ascontiguousarray(frames, dtype=np.float32)


def _one(candidate: Candidate, setup: _Setup, cache: LatencyCache, work_dir: Path) -> LatencyResult:
    """One candidate: from the cache, else built and measured (and stored when it ran)."""
    key = candidate.key()
    parts = measurement_parts(
        candidate,
        target=setup.target,
        spec=setup.spec,
        options=setup.options,
        threads=setup.threads,
        latency=setup.latency,
        frame_shape=setup.frames.shape[1:],
        num_classes=setup.num_classes,
        host=setup.host,
    )
    from edgekd.deploy.cache import cache_key

    record_key = cache_key(parts)
    found = cache.load(record_key, key)
    if found is not None:
        setup.log(f"latency {candidate.label()}: cached (p50 {found.p50_ms:.3f} ms)")
        return found
    folder = work_dir / key[:16]
    start = time.perf_counter()
    try:
        # Scratch files, removed below whatever happens: not journaled for a failed command's undo.
        with durable():
            result = _build_and_measure(candidate, setup, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # a search builds dozens: keep the disk use flat
    seconds = time.perf_counter() - start
    if result.status == "ok":
        setup.log(
            f"latency {candidate.label()}: p50 {result.p50_ms:.3f} ms, p90 {result.p90_ms:.3f} ms "
            f"({result.precision}, {seconds:.1f} s)"
        )
    else:
        setup.log(f"latency {candidate.label()}: failed: {result.reason}")
    cache.store(record_key, parts, result)
    return result


def _build_and_measure(candidate: Candidate, setup: _Setup, folder: Path) -> LatencyResult:
    """Build ``candidate``'s artifact in ``folder`` and bench it; any failure of this one
    candidate (a bad knob, an export or quantizer refusing it, a runtime error) is a "failed"
    result, while a broken connection to the device (RemoteError) ends the search."""
    from edgekd.bench.entries import one_line
    from edgekd.deploy.build import BuildFailed

    key = candidate.key()
    try:
        student, params, macs = _save_initialised(candidate, setup, folder)
        artifact = _build_artifact(student, setup, folder)
    except BuildFailed as exc:
        return _failed(key, exc.message)
    except Exception as exc:  # one candidate that does not build must not sink the search
        return _failed(key, f"build failed: {one_line(exc)}")
    entry = _bench(artifact, setup, folder)
    if entry["status"] != "ok":
        return _failed(key, entry["reason"] or f"bench entry {entry['status']}")
    return LatencyResult(
        key=key,
        status="ok",
        reason=None,
        p50_ms=float(entry["latency_ms"]["p50"]),
        p90_ms=float(entry["latency_ms"]["p90"]),
        precision=entry.get("executed_precision") or setup.spec.session_precision,
        params=params,
        macs=macs,
        size_bytes=entry["artifact"]["size_bytes"],
        cached=False,
    )


def _save_initialised(candidate: Candidate, setup: _Setup, folder: Path) -> tuple[Path, int, int]:
    """The candidate at its seeded initialisation, saved as ``folder/student.pt``; its params and MACs."""
    import torch

    from edgekd.models.checkpoint import save_checkpoint
    from edgekd.models.complexity import count_macs, count_params

    frame_shape = tuple(setup.frames.shape[1:])
    # fork_rng: the caller's random stream (data order, proxy batches) is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = candidate.build(setup.num_classes, frame_shape[0])
    model.eval()  # safe: nn.Module.eval(), inference mode
    params, macs = count_params(model), count_macs(model, frame_shape)
    path = folder / "student.pt"
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        path,
        model,
        model_name=candidate.model,
        model_kwargs=candidate.kwargs_dict(),
        num_classes=setup.num_classes,
        in_channels=frame_shape[0],
        input_shape=frame_shape,
        class_names=[f"class{i}" for i in range(setup.num_classes)],
        kind="search-candidate",
    )
    return path, params, macs


def _build_artifact(student: Path, setup: _Setup, folder: Path) -> Path:
    """The artifact the target's runtime opens, through deploy's builder (raises BuildFailed)."""
    from edgekd.artifacts import sha256_file
    from edgekd.deploy.build import ArtifactBuilder, BuildInputs, frames_sha256
    from edgekd.deploy.cache import DeployCache

    calibration = setup.frames[:CALIBRATION_FRAMES]
    inputs = BuildInputs(
        student=student,
        student_sha256=sha256_file(student),
        parity_frames=setup.frames[:PARITY_FRAMES],
        calibration=calibration,
        calibration_sha256=frames_sha256(calibration),
        calibration_name=f"search-first-{len(calibration)}",
        threads=setup.threads,
    )
    # A build cache of its own, not read (enabled=False): the measurement is what is cached.
    # Quiet: the builder's and the bench's step lines would bury the one line per candidate.
    builder = ArtifactBuilder(inputs, DeployCache(folder / "builds", enabled=False), lambda _l: None)
    return builder.artifact_for(setup.spec).path


def _bench(artifact: Path, setup: _Setup, folder: Path) -> dict[str, Any]:
    """The bench entry of ``artifact`` on the target (``keep_going``: a failure is an entry)."""
    from edgekd.bench.runner import BenchCandidate, BenchConfig, run_bench
    from edgekd.data.dataset import ArrayDataset

    frames = setup.frames[:BENCH_FRAMES]
    dataset = ArrayDataset(
        x=frames,
        y=np.arange(len(frames)) % setup.num_classes,
        class_names=[f"class{i}" for i in range(setup.num_classes)],
    )
    cfg = BenchConfig(latency=setup.latency, threads=setup.threads, roofline=False, keep_going=True)
    spec = setup.spec
    candidate = BenchCandidate(spec.backend, spec.precision, artifact, options=setup.options)
    doc = run_bench(
        [candidate],
        dataset,
        cfg,
        name="search-latency",
        out_dir=folder,
        reference_id="",
        dataset_name="search frames",
        executor=setup.executor,
    )
    return doc["entries"][0]
