"""The bench's measurement core, and a runner script for a device without edgekd.

This file is the ONE implementation of the latency loop, its statistics, the batched
prediction pass, the CPU fingerprint, the peak-memory probe and the GEMM roofline peak.
``edgekd.bench`` imports these functions, and ``edgekd.remote`` copies this very file to
a device and runs it there with ``python3 device_runner.py JOB_DIR``, so local and remote
numbers come from the same code. It may therefore import only the standard library and
numpy at module level; a runtime (onnxruntime, openvino) is imported inside the loader
that needs it. It must never import edgekd or torch.

Job protocol (written by :mod:`edgekd.remote.bench`): ``JOB_DIR/job.json`` lists the
candidates (runtime, model file name, resolved runtime options) and the latency settings;
``JOB_DIR/frames.npz`` holds ``x`` float32 [N, ...] (evaluation frames) and ``sample``
float32 [B, ...] (the latency batch). The result is one JSON object on stdout. The runner
deletes ``JOB_DIR`` when it ends, whether it succeeds, fails or is hung up on.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: A run is flagged noisy when its coefficient of variation exceeds this ...
NOISY_CV = 0.15
#: ... or when its p99 exceeds this multiple of its p50 (a heavy tail: preemption, throttling).
NOISY_TAIL = 3.0
#: CPU flags that change which kernels a runtime can pick (int8 dot products, bf16, AMX).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
RUNNER_PROTOCOL = 1


# --------------------------------------------------------------------------- latency


def latency_summary(
    samples_ns: Any,
    *,
    batch_size: int = 1,
    first_inference_ns: int = 0,
    runtime_ms: Any = None,
) -> dict[str, Any]:
    """Statistics of per-call times given in nanoseconds; every time in the result is in ms.

    Keys: runs, p50, p90, p95, p99 (linear interpolation), mean, std (population),
    cv = std / mean, min, max, first_inference_ms, throughput_per_s = batch_size / mean
    (frames per second), noisy = cv > NOISY_CV or p99 > NOISY_TAIL * p50, and
    runtime_p50: the median of the runtime's own per-call timings (``runtime_ms``, e.g.
    OpenVINO's ``InferRequest.latency``, what benchmark_app reports), None without them.
    """
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("latency statistics need at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, [50, 90, 95, 99]))
    mean = float(ms.mean())
    std = float(ms.std())
    cv = std / mean if mean > 0 else 0.0
    return {
        "runs": int(ms.size),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "mean": mean,
        "std": std,
        "cv": cv,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "first_inference_ms": first_inference_ns / 1e6,
        "throughput_per_s": batch_size / (mean / 1e3) if mean > 0 else 0.0,
        "noisy": bool(cv > NOISY_CV or p99 > NOISY_TAIL * p50),
        "runtime_p50": float(np.median(runtime_ms)) if runtime_ms is not None and len(runtime_ms) else None,
    }


def time_calls(
    run: Callable[[Any], Any],
    sample: Any,
    *,
    warmup_runs: int,
    warmup_seconds: float,
    min_runs: int,
    min_seconds: float,
    max_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
    runtime_clock: Callable[[], float] | None = None,
    runtime_times: list[float] | None = None,
) -> tuple[list[int], int]:
    """Time ``run(sample)`` call by call: returns (per-call ns of the timed calls, first call ns).

    ``runtime_clock`` (the runtime's own timing of the last call, ms) is read after each timed
    call, outside the timed interval, into ``runtime_times``.

    The first call is timed alone (lazy allocation, kernel choice) and counts as warm-up.
    Warm-up lasts until both ``warmup_runs`` calls and ``warmup_seconds`` have passed, the
    measurement until both ``min_runs`` calls and ``min_seconds``; each phase stops at
    ``max_seconds``. The garbage collector is paused while timing, so a collection is never
    charged to the model.
    """
    max_ns = int(max_seconds * 1e9)
    start = clock()
    run(sample)
    first_ns = clock() - start
    done = 1
    while (done < warmup_runs or clock() - start < warmup_seconds * 1e9) and clock() - start < max_ns:
        run(sample)
        done += 1

    samples: list[int] = []
    min_ns = min_seconds * 1e9
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        begin = clock()
        while True:
            t0 = clock()
            run(sample)
            t1 = clock()
            samples.append(t1 - t0)
            if runtime_clock is not None and runtime_times is not None:
                runtime_times.append(runtime_clock())
            elapsed = t1 - begin
            if (len(samples) >= min_runs and elapsed >= min_ns) or elapsed >= max_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, first_ns


# --------------------------------------------------------------------------- accuracy


def predict_classes(run: Callable[[Any], Any], x: Any, *, static_batch: int | None, batch_size: int) -> Any:
    """Arg-max class of every frame of ``x`` [N, ...], int64 [N].

    A static-batch model (``static_batch`` B) is fed exactly B frames per call, the last
    chunk padded by repeating its last frame (those predictions are dropped); otherwise
    ``batch_size`` frames per call. ValueError when a logit is NaN or Inf.
    """
    step = static_batch if static_batch else batch_size
    preds = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        real = len(chunk)
        if static_batch and real < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
        logits = np.asarray(run(chunk)).reshape(len(chunk), -1)[:real]
        if not np.isfinite(logits).all():  # NaN would argmax to class 0 and score as a prediction
            raise ValueError(f"the model outputs NaN or Inf for frames {start}..{start + real - 1}")
        preds[start : start + real] = logits.argmax(axis=1)
    return preds


# --------------------------------------------------------------------------- environment


def parse_cpuinfo(text: str) -> tuple[str | None, set[str] | None]:
    """(model name, flags) from the first processor block of /proc/cpuinfo text."""
    model: str | None = None
    flags: set[str] | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and flags is None:  # "Features" on ARM
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return model, flags


def cpu_fingerprint(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """CPU model, logical cores (all, and usable by this process) and the ISA flags of interest.

    ``isa`` maps each flag of :data:`ISA_FLAGS` to True/False, or is None when the flags
    cannot be read (not Linux).
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo_text = ""
    model, flags = parse_cpuinfo(cpuinfo_text)
    try:
        usable = len(os.sched_getaffinity(0))  # a container or taskset may allow fewer cores
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "isa": None if flags is None else {flag: flag in flags for flag in ISA_FLAGS},
    }


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def device_fingerprint() -> dict[str, Any]:
    """The fingerprint the runner reports from a device (no edgekd there: runtime versions only)."""
    return {
        "cpu": cpu_fingerprint(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in ("numpy", "onnxruntime", "openvino")},
    }


# --------------------------------------------------------------------------- memory, pinning, roofline


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class PeakMemory:
    """Resident-memory high-water mark growth over a block, in MiB.

    On Linux the kernel's high-water mark (VmHWM) is reset at the start by writing "5" to
    /proc/self/clear_refs, so earlier peaks (an import, a previous model) do not hide this
    block's; ``delta_mib`` is then VmHWM at the end minus VmRSS at the start. Where that is
    unavailable, ``ru_maxrss`` growth is used (0 when an earlier peak was higher). None when
    neither can be read (not Linux/macOS).
    """

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):  # not Linux, or a kernel without clear_refs
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        self._rss = _status_kib("VmRSS")
        self._maxrss = _maxrss_kib()
        self.delta_mib: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM")
        if hwm is not None and self._rss is not None:
            self.delta_mib = max(0, hwm - self._rss) / 1024
        elif self._maxrss is not None:
            end = _maxrss_kib()
            self.delta_mib = None if end is None else max(0, end - self._maxrss) / 1024


def _maxrss_kib() -> int | None:
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value  # bytes on macOS, KiB on Linux


class PinnedCpus:
    """Restrict this process to ``cpus`` (logical CPU ids) for a block, then restore.

    ``cpus`` None or empty: no change. Raises ValueError naming the CPUs when the OS refuses.
    """

    def __init__(self, cpus: list[int] | None) -> None:
        self.cpus = sorted(set(cpus or []))
        self._old: set[int] | None = None

    def __enter__(self) -> PinnedCpus:
        if self.cpus:
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("thread pinning needs os.sched_setaffinity (Linux)")
            self._old = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, self.cpus)
            except OSError as exc:
                raise ValueError(f"cannot pin to CPUs {self.cpus}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            os.sched_setaffinity(0, self._old)


def gemm_peak(n: int = 1024, repeats: int = 5) -> dict[str, Any]:
    """The machine's float32 matrix-multiply peak: median GFLOP/s of ``repeats`` n x n GEMMs.

    One GEMM is 2 n^3 floating-point operations, run by numpy's BLAS on every core this
    process may use. Returns ``{"peak_gflops", "gemm_n", "repeats", "gemm_ms"}``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: BLAS thread pool start, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter_ns() - t0)
    median_ns = float(np.median(times))
    return {
        "peak_gflops": 2.0 * n**3 / median_ns,  # flop per ns == GFLOP/s
        "gemm_n": n,
        "repeats": repeats,
        "gemm_ms": median_ns / 1e6,
    }


def roofline_fields(macs: int | None, batch_size: int, p50_ms: float, peak_gflops: float | None) -> dict:
    """``achieved_gflops`` = 2 x MACs x batch / p50 and ``fraction_of_peak``; None when unknown."""
    if not macs or p50_ms <= 0:
        return {"achieved_gflops": None, "fraction_of_peak": None}
    achieved = 2.0 * macs * batch_size / (p50_ms * 1e6)  # flop per ns
    return {
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak_gflops if peak_gflops else None,
    }


# --------------------------------------------------------------------------- runtimes (device side)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def input_mismatch(
    model_shape: Any, batch_shape: Any, what: str = "a batch of the data's frames"
) -> str | None:
    """Why ``batch_shape`` (e.g. the bench's batch [1, 2, 128]) does not fit a model input
    ``model_shape`` (batch first, None for a dynamic axis); None when it fits. The text reads
    "model input [?, 3, 32] does not fit a batch of the data's frames [1, 2, 128]"."""
    want, got = tuple(model_shape), tuple(batch_shape)
    same_rank = len(want) == len(got) and len(want) > 0
    sample_fits = same_rank and all(w is None or w == g for w, g in zip(want[1:], got[1:], strict=True))
    if sample_fits and want[0] in (None, got[0]):
        return None
    shown = "[" + ", ".join("?" if d is None else str(d) for d in want) + "]"
    if sample_fits:
        return f"model input {shown} takes batch {want[0]} only, not the batch {got[0]} of {what} {list(got)}"
    return f"model input {shown} does not fit {what} {list(got)}"


def check_input_spec(types: list[str], accepted: tuple[str, ...], name: str) -> None:
    """ValueError unless the model has exactly one input and its element type is in ``accepted``."""
    if len(types) != 1:
        raise ValueError(f"{name} has {len(types)} inputs; edgekd feeds exactly one (the frames)")
    if types[0] not in accepted:
        raise ValueError(f"{name} takes {types[0]} input; edgekd feeds float32 frames")


def ort_session_options(ort: Any, resolved: dict[str, Any]) -> Any:
    """An ``onnxruntime.SessionOptions`` from resolved options (see
    ``edgekd.backends.onnxruntime_backend.resolve_ort_options``): execution_mode
    ("sequential"|"parallel"), graph_optimization_level (an ``ORT_*`` name),
    intra_op_num_threads, inter_op_num_threads (0 = default), config_entries."""
    so = ort.SessionOptions()
    parallel = resolved.get("execution_mode") == "parallel"
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    level = resolved.get("graph_optimization_level", "ORT_ENABLE_ALL")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3  # warnings about unused initializers etc. are noise in a benchmark
    if resolved.get("intra_op_num_threads"):
        so.intra_op_num_threads = int(resolved["intra_op_num_threads"])
    if resolved.get("inter_op_num_threads"):
        so.inter_op_num_threads = int(resolved["inter_op_num_threads"])
    for key, value in (resolved.get("config_entries") or {}).items():
        so.add_session_config_entry(key, str(value))
    return so


def _open_onnxruntime(path: Path, opts: dict[str, Any]) -> tuple[Callable[[Any], Any], tuple, str | None]:
    import onnxruntime as ort

    so = ort_session_options(ort, opts)
    providers = opts.get("providers") or ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise LookupError(
            f"onnxruntime on the device has no {providers[0]}; "
            f"available: {', '.join(ort.get_available_providers())}"
        )
    session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
    inputs = session.get_inputs()
    check_input_spec([i.type for i in inputs], ("tensor(float)", "tensor(float16)"), path.name)
    spec = inputs[0]
    name, out = spec.name, [session.get_outputs()[0].name]
    cast = np.float16 if spec.type == "tensor(float16)" else None
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)

    def run(x: Any) -> Any:
        if cast is not None:
            x = x.astype(cast)
        return np.asarray(session.run(out, {name: x})[0], dtype=np.float32)

    return run, shape, None  # the host reads ORT's executed precision from the graph


# Runtime-graph layer types that carry the arithmetic; their runtimePrecision says what executes.
_OV_COMPUTE = frozenset(
    {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}
)


def ov_executed_precision(compiled: Any, model: Any) -> str:
    """What an OpenVINO compiled model computes in (the one answer, here and on a device).

    "int8" when a compute layer of the plugin's runtime graph runs in i8/u8 (FakeQuantize or
    Q/DQ fused into integer kernels), or when the IR holds FakeQuantize and the runtime graph
    cannot be read. Otherwise the read-back INFERENCE_PRECISION_HINT: f32 -> "fp32",
    bf16 -> "bf16", f16 -> "fp16".
    """
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    float_label = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)
    try:
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else None
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else None
            if kind in _OV_COMPUTE and prec in ("i8", "u8"):
                return "int8"
    except RuntimeError:  # plugins other than CPU/GPU may not expose a runtime graph
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            return "int8"
    return float_label


def _open_openvino(path: Path, opts: dict[str, Any]) -> tuple[Callable[[Any], Any], tuple, str | None]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    check_input_spec(
        [str(i.get_element_type().get_type_name()) for i in model.inputs], ("f32", "f16"), path.name
    )
    shape = tuple(d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape())
    compiled = core.compile_model(model, opts.get("device", "CPU"), opts.get("config") or {})
    request = compiled.create_infer_request()
    return ov_request_runner(request), shape, ov_executed_precision(compiled, model)


def ov_request_runner(request: Any) -> Callable[[Any], Any]:
    """``run(x) -> first output`` for an OpenVINO InferRequest, the fast way.

    ``request.infer({0: x})`` builds a dict, wraps tensors and copies every output: on a
    small model that is more than half the call (78 vs 40 us for a 2x128 CNN). Copying
    the frames into the request's own input tensor, ``infer()`` with no arguments and
    copying the first output costs a few microseconds. The input tensor is re-shaped
    only when the batch changes (dynamic-batch models).
    """
    cache: list[Any] = [None, None]  # (shape, numpy view of the input tensor)

    def run(x: Any) -> Any:
        if cache[0] != x.shape:
            tensor = request.get_input_tensor(0)
            if tuple(tensor.shape) != x.shape:
                tensor.shape = list(x.shape)
            cache[0], cache[1] = x.shape, tensor.data
        cache[1][...] = x
        request.infer()
        return request.get_output_tensor(0).data.copy()

    # OpenVINO's own timing of the last infer() (ms): what benchmark_app reports, without Python.
    run.runtime_ms = lambda: float(request.latency)  # type: ignore[attr-defined]
    return run


_OPENERS = {"onnxruntime": _open_onnxruntime, "openvino": _open_openvino}


def bench_candidate(job: dict[str, Any], cand: dict[str, Any], x: Any, sample: Any, root: Path) -> dict:
    """Load, time and predict one candidate; never raises (a failure is a status with a reason)."""
    runtime = cand["runtime"]
    result: dict[str, Any] = {"id": cand["id"], "status": "failed", "reason": None}
    try:
        __import__(runtime)
    except ImportError as exc:
        result.update(status="skipped", reason=f"{runtime} is not installed on the device ({exc})")
        return result
    lat = job["latency"]
    try:
        with PeakMemory() as memory:
            t0 = time.perf_counter_ns()
            run, shape, executed = _OPENERS[runtime](root / cand["model"], cand.get("options") or {})
            load_ns = time.perf_counter_ns() - t0
            why = input_mismatch(shape, sample.shape)
            if why is not None:  # before timing: a model that cannot take the frames fails here
                raise ValueError(f"{cand.get('name', cand['model'])}: {why}")
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
        static = shape[0] if shape else None
        probe = np.asarray(run(np.repeat(x[:1], static or 1, axis=0)))
        if not np.isfinite(probe).all():
            raise ValueError(f"{cand.get('name', cand['model'])} outputs NaN or Inf on the first frame")
        preds = predict_classes(run, x, static_batch=static, batch_size=job["accuracy_batch_size"])
    except LookupError as exc:  # a missing execution provider or device: not a failure of the model
        result.update(status="skipped", reason=str(exc))
        return result
    except Exception as exc:  # one broken candidate must not sink the others
        result.update(reason=_first_line(exc))
        return result
    result.update(
        status="ok",
        reason=None,
        executed_precision=executed,
        load_ms=load_ns / 1e6,
        latency=latency_summary(
            samples, batch_size=len(sample), first_inference_ns=first_ns, runtime_ms=runtime_times or None
        ),
        peak_memory_mib=memory.delta_mib,
        output_width=int(probe.reshape(probe.shape[0], -1).shape[1]),
        input_shape=list(shape),
        predictions=preds.tolist(),
    )
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
    """``python3 device_runner.py JOB_DIR``: print the result JSON; exit 0, or 2 with a message."""
    if len(argv) != 1:
        print("usage: device_runner.py JOB_DIR", file=sys.stderr)
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
        print(f"edgekd device runner: {_first_line(exc)}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
