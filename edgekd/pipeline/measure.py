"""Pipeline stages that measure and judge: bench (latency and accuracy of every artifact through
one harness) and gate (a target profile's budgets).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgekd.artifacts import commits_on_success, read_manifest
from edgekd.errors import ConfigError
from edgekd.pipeline.checks import Log, _quiet


def accuracy_of(backend: str, path: Path, val: Any) -> float:
    """Labelled accuracy of the model file ``path`` on ``val`` (an ArrayDataset or a map-style
    dataset, streamed when lazy) through the bench evaluator."""
    from edgekd.backends.base import session_from_artifact
    from edgekd.bench.accuracy import evaluate_accuracy

    return evaluate_accuracy(session_from_artifact(backend, path), val).overall


def bench_candidates(
    artifacts: dict[str, Path], student_path: Path | None, threads: int | None, target: Any = None
) -> list:
    """Map ``{"<backend>/<precision>": file}`` to bench candidates, with the student's size figures.

    With a ``target`` profile each entry is opened with the profile's settings for its runtime
    (see :func:`edgekd.backends.profile_options.options_for_entry`); ``threads`` overrides.
    """
    from edgekd.backends.profile_options import options_for_entry
    from edgekd.bench.runner import BenchCandidate

    params = macs = None
    if student_path is not None:
        manifest = read_manifest(student_path, required=False)
        metrics = manifest.get("metrics") if isinstance(manifest, dict) else None
        metrics = metrics if isinstance(metrics, dict) else {}
        # Figures from a file: kept only when they are counts.
        params, macs = (
            v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
            for v in (metrics.get("params"), metrics.get("macs"))
        )
    else:  # no checkpoint benched (the Python API's own modules): count on the FP32 ONNX graph
        params, macs = _onnx_figures(artifacts)
    candidates = []
    for entry_id, path in artifacts.items():
        backend, _, precision = entry_id.partition("/")
        candidates.append(
            BenchCandidate(
                backend=backend,
                precision=precision or "fp32",
                artifact=Path(path),
                params=params,
                macs=macs,
                options=options_for_entry(target, backend, precision or "fp32", threads),
            )
        )
    return candidates


def _onnx_figures(artifacts: dict[str, Path]) -> tuple[int | None, int | None]:
    """Parameters and MACs counted on the FP32 ONNX file among ``artifacts`` (None, None without)."""
    fp32 = [Path(p) for k, p in artifacts.items() if k.endswith("/fp32") and str(p).lower().endswith(".onnx")]
    if not fp32:
        return None, None
    from edgekd.gate.static import onnx_static_metrics

    metrics = onnx_static_metrics(fp32[0])
    return metrics.get("params"), metrics.get("macs")


def entry_for_artifact(path: Path) -> str:
    """The bench entry a file gets by default: the first registered backend that claims it
    (:meth:`edgekd.backends.base.Backend.artifact_entry`: .pt torch, .onnx ONNX Runtime, int8
    when its activations are quantized, .xml OpenVINO, an engine TensorRT)."""
    import edgekd.backends  # noqa: F401  (registers the built-in backends)
    from edgekd.backends.base import entry_for_artifact as registry_entry

    entry = registry_entry(path)
    if entry is None:
        raise ConfigError(
            f"cannot tell which runtime runs {path}",
            hint="name it: BACKEND/PRECISION=FILE, e.g. openvino/fp32=model.onnx",
        )
    return entry


@commits_on_success
def stage_bench(
    artifacts: dict[str, Path],
    student_path: Path | None,
    data_path: Path | None,
    bench_cfg: Any,
    out_dir: Path,
    *,
    name: str,
    reference: str = "torch/fp32",
    host: str = "local",
    ssh: Any = None,
    remote_python: str = "python3",
    teacher_path: Path | None = None,
    target: Any = None,
    log: Log = _quiet,
    dataset: Any = None,
) -> dict[str, Any]:
    """Latency and accuracy of every artifact through one harness: bench.json + report.html.

    The frames are the test split of ``data_path`` (a data file), or of ``dataset`` (an opened
    map-style dataset, e.g. the Python API's wrapped torch Dataset) when given instead.

    ``host`` "local" runs here; ``ssh://user@device[:port]`` copies the models and the
    runtime package to the device and runs the same loop there (the executor of edgekd/remote/).
    ``target`` (a :class:`edgekd.targets.TargetProfile`) supplies each runtime's settings
    and is recorded in bench.json.
    """
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.runner import run_bench
    from edgekd.bench.schema import write_bench

    chosen = {key: path for key, path in artifacts.items() if key in set(bench_cfg.backends)}
    for key in bench_cfg.backends:
        if key.startswith("tensorrt/") and key not in chosen:
            # No engine was built here (no TensorRT or GPU): the entry says why instead of vanishing.
            chosen[key] = out_dir / f"student.{key.partition('/')[2]}.engine"
    if not chosen:
        raise ConfigError(
            f"bench.backends {bench_cfg.backends} selects none of the artifacts {sorted(artifacts)}",
            hint="list entries such as torch/fp32, onnxruntime/fp32, onnxruntime/int8, openvino/fp32",
        )
    if target is not None and target.input_shape and bench_cfg.input_shape is None:
        # Every model and the frames must fit the target, as in `edgekd bench --target`.
        bench_cfg = dataclasses.replace(bench_cfg, input_shape=list(target.input_shape))
    from edgekd.data.artifact import open_data
    from edgekd.data.batches import whole_network_arrays

    if dataset is None:
        dataset = open_data(data_path)
    test = bench_split(dataset)
    if host != "local":
        test = whole_network_arrays(test, "a remote bench")  # the device is sent every frame
    candidates = bench_candidates(chosen, student_path, bench_cfg.threads, target)
    common = dict(
        name=name,
        out_dir=out_dir,
        reference_id=reference,
        log=log,
        dataset_name=data_path.name if data_path is not None else str(dataset.source),
        split="test" if dataset.split is not None else "all",
    )
    from edgekd.remote import executor_for

    executor = executor_for(host, ssh=ssh, remote_python=remote_python)
    doc = run_bench(candidates, test, bench_cfg, executor=executor, **common)
    if target is not None:
        doc["target"] = target.name
    if teacher_path is not None:
        doc["teacher"] = teacher_record(teacher_path, test)
        log(f"teacher {teacher_path.name}: accuracy {doc['teacher']['accuracy']:.2%} on the same frames")
    write_bench(doc, out_dir / "bench.json")
    write_html_report(doc, out_dir / "report.html")
    return doc


def teacher_record(teacher_path: Path, test: Any) -> dict[str, Any]:
    """The teacher's accuracy on the bench's frames, through the same evaluator as the students."""
    from edgekd.artifacts import sha256_file
    from edgekd.models.onnx_teacher import is_onnx_path

    backend = "onnxruntime" if is_onnx_path(teacher_path) else "torch"
    return {
        "path": teacher_path.name,
        "sha256": sha256_file(teacher_path),
        "accuracy": accuracy_of(backend, teacher_path, test),
    }


def bench_split(dataset: Any) -> Any:
    """The frames a bench scores: the test split of ``dataset`` (all of it without split labels).

    In-memory data gives an ArrayDataset of the split (one copy, as fast as ever); lazy data
    gives the split as a map-style dataset, which the bench streams (never one array).
    """
    from edgekd.data.batches import in_memory, whole_network_arrays

    test = dataset.subset("test") if dataset.split is not None else dataset
    return whole_network_arrays(test, "the bench") if in_memory(test) else test


def stage_gate(bench_doc: dict[str, Any], target_name: str):
    """Judge the bench result against a target profile's budgets (see edgekd/gate/)."""
    from edgekd.gate import evaluate_gate
    from edgekd.targets import load_target

    return evaluate_gate(bench_doc, load_target(target_name))
