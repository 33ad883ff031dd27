"""The bench job protocol: open, time and predict every candidate of a job folder.

``python3 -m <package>.device_runner JOB_DIR`` runs a job on a device that has numpy and a
runtime but not edgekd or torch: the remote executor copies this whole package there. The
functions it calls (the openers, THE timing loop, the prediction pass, the fingerprint) are
the ones the local bench calls, so a remote entry is measured exactly as a local one.

Job protocol: ``JOB_DIR/job.json`` lists the candidates (id, runtime, model file name, the
runtime's settings as written by ``OrtSettings.to_json``/``OvSettings.to_json``) and the
latency settings; ``JOB_DIR/frames.npz`` holds ``x`` float32 [N, ...] (evaluation frames)
and ``sample`` float32 [B, ...] (the latency batch). The result is one JSON object on
stdout. The runner deletes ``JOB_DIR`` when it ends, whether it succeeds, fails or is hung
up on.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import first_line, input_mismatch, predict_classes
from .machine import PeakMemory, PinnedCpus, gemm_peak, library_version, machine_fingerprint
from .timing import latency_summary, time_calls

RUNNER_PROTOCOL = 2
#: The package's files the remote executor ships (this folder, as a package).
PACKAGE_DIR = Path(__file__).resolve().parent

Opened = tuple[Callable[[Any], Any], tuple, "str | None"]


def device_fingerprint() -> dict[str, Any]:
    """The fingerprint the runner reports from a device (no edgekd there: runtime versions only)."""
    return machine_fingerprint({name: library_version(name) for name in ("numpy", "onnxruntime", "openvino")})


def _open_onnxruntime(path: Path, settings: dict[str, Any]) -> Opened:
    from .onnxruntime_open import OrtSettings, open_ort, ort_runner

    session = open_ort(path, OrtSettings.from_json(settings))
    run, shape = ort_runner(session, path.name)
    return run, shape, None  # the host reads ORT's executed precision from the graph


def _open_openvino(path: Path, settings: dict[str, Any]) -> Opened:
    from .openvino_open import (
        OvSettings,
        compile_ov,
        new_core,
        ov_executed_precision,
        ov_input_shape,
        ov_request_runner,
    )

    core = new_core()
    model = core.read_model(str(path))
    shape = ov_input_shape(model)
    compiled = compile_ov(model, OvSettings.from_json(settings), core)
    return ov_request_runner(compiled.create_infer_request()), shape, ov_executed_precision(compiled, model)


#: Runtimes the runner opens (a backend with ``remote = True`` names one of these).
OPENERS: dict[str, Callable[[Path, dict[str, Any]], Opened]] = {
    "onnxruntime": _open_onnxruntime,
    "openvino": _open_openvino,
}


def _timed(run: Callable[[Any], Any], sample: Any, lat: dict[str, Any]) -> dict[str, Any]:
    """THE timing loop over ``run(sample)`` with the job's latency settings; its summary."""
    runtime_times: list[float] = []
    samples, first_ns = time_calls(
        run,
        sample,
        warmup_runs=lat["warmup_runs"],
        warmup_seconds=lat["warmup_seconds"],
        min_runs=lat["min_runs"],
        min_seconds=lat["min_seconds"],
        max_seconds=lat["max_seconds"],
        runtime_clock=getattr(run, "runtime_ms", None),
        runtime_times=runtime_times,
    )
    return latency_summary(
        samples, batch_size=len(sample), first_inference_ns=first_ns, runtime_ms=runtime_times or None
    )


def _measure(job: dict[str, Any], cand: dict[str, Any], x: Any, sample: Any, root: Path) -> dict[str, Any]:
    """Open, time and predict one candidate (raises on failure); the "ok" result fields."""
    name = cand.get("name", cand["model"])
    with PeakMemory() as memory:
        t0 = time.perf_counter_ns()
        run, shape, executed = OPENERS[cand["runtime"]](root / cand["model"], cand.get("options") or {})
        load_ns = time.perf_counter_ns() - t0
        why = input_mismatch(shape, sample.shape)
        if why is not None:  # before timing: a model that cannot take the frames fails here
            raise ValueError(f"{name}: {why}")
        latency = _timed(run, sample, job["latency"])
    static = shape[0] if shape else None
    probe = np.asarray(run(np.repeat(x[:1], static or 1, axis=0)))
    if not np.isfinite(probe).all():
        raise ValueError(f"{name} outputs NaN or Inf on the first frame")
    preds = predict_classes(run, x, static_batch=static, batch_size=job["accuracy_batch_size"])
    return {
        "status": "ok",
        "reason": None,
        "executed_precision": executed,
        "load_ms": load_ns / 1e6,
        "latency": latency,
        "peak_memory_mib": memory.delta_mib,
        "output_width": int(probe.reshape(probe.shape[0], -1).shape[1]),
        "input_shape": list(shape),
        "predictions": preds.tolist(),
    }


def bench_candidate(job: dict[str, Any], cand: dict[str, Any], x: Any, sample: Any, root: Path) -> dict:
    """Load, time and predict one candidate; never raises (a failure is a status with a reason)."""
    runtime = cand["runtime"]
    result: dict[str, Any] = {"id": cand["id"], "status": "failed", "reason": None}
    if runtime not in OPENERS:
        result.update(status="skipped", reason=f"the device runner cannot open {runtime} models")
        return result
    try:
        __import__(runtime)
    except ImportError as exc:
        result.update(status="skipped", reason=f"{runtime} is not installed on the device ({exc})")
        return result
    try:
        result.update(_measure(job, cand, x, sample, root))
    except LookupError as exc:  # a missing execution provider or device: not a failure of the model
        result.update(status="skipped", reason=str(exc))
    except Exception as exc:  # one broken candidate must not sink the others
        result.update(reason=first_line(exc))
    return result


def run_job(root: Path) -> dict[str, Any]:
    """Run every candidate of ``root/job.json`` on ``root/frames.npz``; the result document."""
    job = json.loads((root / "job.json").read_text(encoding="utf-8"))
    with np.load(root / "frames.npz", allow_pickle=False) as data:
        x, sample = np.ascontiguousarray(data["x"]), np.ascontiguousarray(data["sample"])
    with PinnedCpus(job.get("pin_cpus")):
        roofline = gemm_peak() if job.get("roofline", True) else None
        results = [bench_candidate(job, cand, x, sample, root) for cand in job["candidates"]]
    return {
        "protocol": RUNNER_PROTOCOL,
        "environment": device_fingerprint(),
        "roofline": roofline,
        "results": results,
    }


def _hang_up(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: the job folder is removed


def main(argv: list[str]) -> int:
    """``python3 -m <package>.device_runner JOB_DIR``: print the result JSON; exit 0, or 2 with a message."""
    if len(argv) != 1:
        print("usage: python3 -m <package>.device_runner JOB_DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, _hang_up)
    try:
        result = run_job(root)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        return 0
    except Exception as exc:
        print(f"edgekd device runner: {first_line(exc)}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
