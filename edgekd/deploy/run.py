"""``deploy_student``: plan, build, measure and choose; write deploy.json and the winner.

    student (.pt or .onnx) + target profile + data.npz (or a data stage's data.json)
      -> candidates the target allows here (edgekd.deploy.candidates)
      -> their artifacts, built or found in the cache (edgekd.deploy.build)
      -> latency and accuracy through the bench harness, measured or cached (edgekd.deploy.measure)
      -> the selection rule (edgekd.deploy.choose)
      -> OUT/deploy.json + OUT/deployed.<ext> (+ manifest)

deploy.json records every input's hash, every candidate's recipe, figures and verdict, and
the rule's parameters, so the choice can be recomputed from it (``choose.replay``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgekd.artifacts import ensure_dir, require_file, sha256_file
from edgekd.bench.latency import LatencyConfig
from edgekd.bench.runner import BenchConfig
from edgekd.config import to_dict
from edgekd.data.artifact import open_data
from edgekd.data.dataset import ArrayDataset
from edgekd.deploy import report
from edgekd.deploy.build import ArtifactBuilder, BuildFailed, BuildInputs, build_recipe, frames_sha256
from edgekd.deploy.cache import DeployCache
from edgekd.deploy.candidates import PlannedCandidate, plan_candidates
from edgekd.deploy.choose import NoCandidate, NothingWithinBudget, SelectionRule, candidate_row, choose
from edgekd.deploy.measure import MeasureRequest, measure_candidates
from edgekd.deploy.student import check_student
from edgekd.errors import ConfigError
from edgekd.targets import TargetProfile

PARITY_FRAMES = 256  # real test frames each export is checked on
DEFAULT_MAX_DROP = 0.01  # one point, when neither the target nor the command line sets a budget


@dataclasses.dataclass
class DeployOptions:
    """How to deploy. ``host`` None: the target's host. ``runtimes`` None: all the device allows.
    ``calibration`` None: ``modrec-stratified-snr`` for data with SNR labels, else ``random-256``.
    ``max_accuracy_drop`` None: the target's budget. ``use_cache`` False rebuilds and re-measures
    everything (the cache is still refreshed)."""

    out_dir: Path
    cache_dir: Path | None = None
    host: str | None = None
    ssh: Any = None
    remote_python: str = "python3"
    runtimes: Iterable[str] | None = None
    calibration: str | None = None
    latency: LatencyConfig = dataclasses.field(default_factory=LatencyConfig)
    threads: int | None = None
    max_accuracy_drop: float | None = None
    use_cache: bool = True


def selection_rule(target: TargetProfile, override: float | None) -> SelectionRule:
    """The accuracy budget: the command line's, else the target's, else one point."""
    budgets = target.budgets
    if override is not None:
        if not 0.0 <= override <= 1.0:
            raise ConfigError(
                f"--max-accuracy-drop must be in [0, 1], got {override}", hint="0.01 allows one point"
            )
        return SelectionRule(override, None, budgets.min_accuracy, budget_source="command line")
    if budgets.max_accuracy_drop is None and budgets.max_accuracy_drop_relative is None:
        return SelectionRule(
            DEFAULT_MAX_DROP, None, budgets.min_accuracy, budget_source="edgekd default; the target sets none"
        )
    return SelectionRule(
        budgets.max_accuracy_drop,
        budgets.max_accuracy_drop_relative,
        budgets.min_accuracy,
        budget_source=f"target {target.name}",
    )


def _test_split(dataset: Any) -> ArrayDataset:
    """The test split (all frames without split labels) as network inputs in memory: every
    candidate is measured on it, and its frames are hashed (refused when it does not fit)."""
    from edgekd.data.batches import whole_network_arrays

    test = dataset.subset("test") if dataset.split is not None else dataset
    return whole_network_arrays(test, "deploy")


def _data_sha256(test: ArrayDataset) -> str:
    digest = hashlib.sha256(frames_sha256(test.x).encode())
    digest.update(test.y.astype("<i8").tobytes())
    return digest.hexdigest()


def _calibration(dataset: Any, name: str | None) -> Any:
    """The INT8 calibration frames: ``name``'s recipe, by default ``modrec-stratified-snr`` for
    data with SNR labels, else ``random-256``."""
    from edgekd.data.calibration import calibration_frames

    default = "modrec-stratified-snr" if dataset.snr is not None else "random-256"
    return calibration_frames(dataset, name or default)


def _record(planned: PlannedCandidate) -> dict[str, Any]:
    spec = planned.spec
    return {
        "id": spec.id,
        "backend": spec.backend,
        "precision": spec.precision,
        "build_recipe": build_recipe(spec),
        "complexity": spec.complexity,
        "status": "skipped" if planned.skip_reason else "ok",
        "reason": planned.skip_reason,
        "verdict": None,
        "why": None,
        "accuracy_drop": None,
        "session_options": None,
        "artifact": None,
        "build": None,
        "measurement": None,
        "figures": None,
    }


@dataclasses.dataclass
class _Run:
    """One deploy: its checked inputs and where it writes."""

    student: Path
    target: TargetProfile
    data_path: Path
    dataset: Any
    test: ArrayDataset
    host: str
    out_dir: Path
    cache: DeployCache
    calibration: Any  # edgekd.data.calibration.CalibrationFrames
    inputs: BuildInputs
    rule: SelectionRule


def deploy_student(
    student: str | Path,
    target: TargetProfile,
    data_path: str | Path,
    opts: DeployOptions,
    *,
    log: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Deploy ``student`` for ``target``: returns the deploy document (also written to
    ``opts.out_dir/deploy.json``) and writes the winner as ``opts.out_dir/deployed.<ext>``.

    Raises:
        InputFileError / ShapeError / ConfigError: bad student, data, calibration or options.
        NoCandidate: no FP32 reference ran (exit 2), or none is within budget (exit 1); deploy.json
            is written first, with every candidate's verdict, and no winner file.
    """
    run = _prepare(student, target, data_path, opts)
    plan = plan_candidates(
        target, host=run.host, student_is_onnx=run.inputs.student_is_onnx, runtimes=opts.runtimes
    )
    records = {p.id: _record(p) for p in plan}
    requests = _build(run, plan, records, opts.threads, log)
    bench_cfg = BenchConfig(latency=opts.latency, threads=opts.threads, roofline=False)
    entries, cached, environment = measure_candidates(
        requests,
        run.test,
        _data_sha256(run.test),
        bench_cfg,
        run.cache,
        out_dir=run.out_dir,
        host=run.host,
        ssh=opts.ssh,
        remote_python=opts.remote_python,
        log=log,
    )
    for req in requests:
        rec, entry = records[req.spec.id], entries[req.spec.id]
        rec["measurement"] = {"cached": cached[req.spec.id], "entry": entry}
        if entry["status"] != "ok":
            rec.update(status=entry["status"], reason=entry["reason"])
            continue
        rec["figures"] = report.figures_of(entry, req.spec.session_precision)
    doc = _document(run, bench_cfg)
    doc.update(
        environment=environment or _environment(run.host),
        cache={"dir": str(run.cache.root), "enabled": run.cache.enabled, **run.cache.counters.to_dict()},
        candidates=list(records.values()),
    )
    return _choose_and_write(run, doc, records, log)


def _prepare(student: str | Path, target: TargetProfile, data_path: str | Path, opts: DeployOptions) -> _Run:
    """Every input checked before any candidate is built: the student opens and fits the data,
    the data fits the target, the budget and the calibration recipe are valid."""
    from edgekd.backends.profile_options import resolve_threads

    student = require_file(student, "student", hint="pass the student.pt (or .onnx) to deploy")
    data_path = require_file(
        data_path, "dataset", hint="pass the data.npz (or data.json) the student was trained on"
    )
    dataset = open_data(data_path)
    test = _test_split(dataset)
    check_student(student, test, f"dataset {data_path}")  # before any candidate is built
    target.check_frames(test.input_shape, str(data_path))  # the target's input_shape meets the data
    rule = selection_rule(target, opts.max_accuracy_drop)
    calibration = _calibration(dataset, opts.calibration)
    out_dir = Path(opts.out_dir)
    ensure_dir(out_dir)  # journaled: removed again (when empty) if the deploy fails
    inputs = BuildInputs(
        student=student,
        student_sha256=sha256_file(student),
        parity_frames=test.x[:PARITY_FRAMES],
        calibration=calibration.frames,
        calibration_sha256=frames_sha256(calibration.frames),
        calibration_name=calibration.name,
        threads=resolve_threads(opts.threads, target),
    )
    cache = DeployCache(opts.cache_dir or out_dir / "cache", enabled=opts.use_cache)
    host = opts.host or target.host
    return _Run(student, target, data_path, dataset, test, host, out_dir, cache, calibration, inputs, rule)


def _build(
    run: _Run,
    plan: list[PlannedCandidate],
    records: dict[str, dict[str, Any]],
    threads: int | None,
    log: Callable[[str], None],
) -> list[MeasureRequest]:
    """Build (or find in the cache) every planned candidate's artifact; a failed build is recorded
    in its candidate's record. Returns what to measure, in catalogue order."""
    from edgekd.backends.profile_options import options_for_entry

    builder = ArtifactBuilder(run.inputs, run.cache, log)
    requests = []
    for planned in plan:
        rec = records[planned.id]
        if planned.skip_reason:
            log(f"skip {planned.id}: {planned.skip_reason}")
            continue
        spec = planned.spec
        try:
            artifact = builder.artifact_for(spec)
        except BuildFailed as exc:
            rec.update(status="failed", reason=exc.message)
            continue
        options = options_for_entry(run.target, spec.backend, spec.session_precision, threads)
        rec["session_options"] = dataclasses.asdict(options)
        rec["artifact"] = {
            "path": str(artifact.path),
            "files": [str(f) for f in artifact.files],
            "sha256": artifact.sha256,
            "size_bytes": sum(f.stat().st_size for f in artifact.files),
        }
        rec["build"] = {
            "cached": None if artifact.key == "input" else artifact.cached,
            "key": artifact.key,
            "seconds": round(builder.seconds.get(build_recipe(spec), 0.0), 3),
            "report": artifact.record.get("report"),
        }
        requests.append(MeasureRequest(spec, artifact, options))
    return requests


def _choose_and_write(
    run: _Run, doc: dict[str, Any], records: dict[str, dict[str, Any]], log: Callable[[str], None]
) -> dict[str, Any]:
    """Apply the selection rule, record every verdict, write deploy.json and the winner.

    Raises NoCandidate (no reference) or NothingWithinBudget, carrying the document, which is
    written first."""
    out_dir, rule = run.out_dir, run.rule
    try:
        choice = choose([candidate_row(r) for r in doc["candidates"]], rule)
    except NoCandidate as exc:
        for rec in doc["candidates"]:
            rec["verdict"], rec["why"] = rec["status"], rec["reason"] or "no reference to compare with"
        doc["choice"] = {"chosen": None, "reference": None, "reference_accuracy": None}
        report.write_document(doc, out_dir)
        exc.document = doc
        raise
    for rec in doc["candidates"]:
        verdict = choice.verdicts[rec["id"]]
        rec.update(verdict=verdict.status, why=verdict.reason, accuracy_drop=verdict.accuracy_drop)
    doc["choice"] = {
        "chosen": choice.chosen,
        "reference": choice.reference,
        "reference_accuracy": choice.reference_accuracy,
    }
    if choice.chosen is None:
        report.write_document(doc, out_dir)
        exc = NothingWithinBudget(
            f"no candidate is within the accuracy budget ({rule.max_accuracy_drop} vs {choice.reference} "
            f"at {choice.reference_accuracy:.2%}); see {out_dir / 'deploy.json'}",
            hint="raise --max-accuracy-drop or improve the student",
        )
        exc.document = doc
        raise exc
    doc["deployed"] = report.write_winner(out_dir, records[choice.chosen], doc, run.student)
    report.write_document(doc, out_dir)
    report.remove_stale_winners(out_dir, doc["deployed"]["files"])
    log(f"deploy: chose {choice.chosen} -> {out_dir / doc['deployed']['file']}")
    return doc


def _environment(host: str) -> dict[str, Any]:
    if host != "local":
        return {"host": host, "note": "every measurement came from the cache"}
    from edgekd.bench.environment import fingerprint

    return fingerprint()


def _document(run: _Run, bench_cfg: BenchConfig) -> dict[str, Any]:
    """The deploy document's inputs: what was deployed, for which target, on which frames and
    calibration, measured how and chosen by which rule (the candidates are added after)."""
    test, inputs = run.test, run.inputs
    return {
        "schema": report.DEPLOY_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "student": {"file": run.student.name, "path": str(run.student), "sha256": inputs.student_sha256},
        "target": {"name": run.target.name, "profile": run.target.to_dict()},
        "host": run.host,
        "data": {
            "file": run.data_path.name,
            "sha256": sha256_file(run.data_path),
            "split": "test" if run.dataset.split is not None else "all",
            "frames": len(test),
            "frames_sha256": _data_sha256(test),
            "class_names": list(test.class_names),
        },
        "calibration": {
            "recipe": inputs.calibration_name,
            "selection": run.calibration.selection.to_dict(),
            "frames_sha256": inputs.calibration_sha256,
        },
        "bench": {
            "latency": to_dict(bench_cfg.latency),
            "threads": bench_cfg.threads,
            "accuracy_batch_size": bench_cfg.accuracy_batch_size,
        },
        "rule": dataclasses.asdict(run.rule),
    }
