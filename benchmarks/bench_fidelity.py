"""How far edgekd's latency numbers are from the runtimes' own: prints a Markdown table.

For each model (edgekd's ``cnn1d_small`` demo student and the larger ``resnet1d``, input
[1, 2, 128], batch 1, static shapes, float32, one thread everywhere):

* edgekd p50: ``measure_latency`` on an edgekd session (ONNX Runtime and OpenVINO),
  repeated ``--repeats`` times; the table shows the median of the repeats' p50s and their
  spread, (max - min) / median.
* bare loop p50: a few lines calling the runtime directly (``InferenceSession.run`` /
  ``InferRequest.infer``) with the same settings, timed per call, the same number of
  repeats interleaved with edgekd's so machine drift hits both alike.
* benchmark_app: OpenVINO's own tool on the same IR with ``-hint latency -nstreams 1``
  (one thread and f32 through ``-load_config``, ``-api sync``), its reported median.

Every measurement runs in a fresh Python process: two runtimes (or two compiled models)
in one process share cores and thread pools and disturb each other.

Goals (docs/benchmarks.md): edgekd within 5% of the bare loop and of benchmark_app;
repeated p50s within 5% of each other on a quiet machine.

Run: ``python benchmarks/bench_fidelity.py [--seconds 1.0] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from edgekd.backends.base import SessionOptions, session_from_artifact
from edgekd.bench.environment import cpu_fingerprint
from edgekd.bench.latency import LatencyConfig, measure_latency

THREADS = 1
SHAPE = (1, 2, 128)
NUM_CLASSES = 11


def export(name: str, folder: Path) -> tuple[Path, Path]:
    """A freshly initialised zoo model as a static-batch ONNX file and an OpenVINO IR."""
    import openvino as ov
    import torch

    from edgekd.models.factory import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    onnx_path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(*SHAPE),), str(onnx_path), input_names=["x"], output_names=["y"], dynamo=False
        )
    xml_path = folder / f"{name}.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    return onnx_path, xml_path


def bare_ort(path: Path, x: np.ndarray, seconds: float) -> float:
    """p50 ms of a plain onnxruntime loop."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return _loop(lambda: sess.run(None, {"x": x}), seconds)


def bare_ov(path: Path, x: np.ndarray, seconds: float) -> float:
    """p50 ms of a plain OpenVINO loop (latency hint, one stream, f32, one thread)."""
    import openvino as ov

    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(THREADS),
        "INFERENCE_PRECISION_HINT": "f32",
    }
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    # The lean call sequence (request.infer({0: x}) spends ~40 us of Python per call
    # building a dict and copying outputs): copy in, infer(), copy the output out.
    data = request.get_input_tensor(0).data

    def call() -> np.ndarray:
        data[...] = x
        request.infer()
        return request.get_output_tensor(0).data.copy()

    return _loop(call, seconds)


def _loop(call, seconds: float) -> float:
    for _ in range(200):
        call()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 1000:
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def edgekd_p50(backend: str, path: Path, x: np.ndarray, seconds: float) -> tuple[float, float | None]:
    """edgekd's call p50 and, where the runtime times itself (OpenVINO), its runtime_p50."""
    session = session_from_artifact(backend, path, SessionOptions(threads=THREADS))
    cfg = LatencyConfig(warmup_runs=200, min_runs=1000, min_seconds=seconds, max_seconds=seconds * 10)
    stats = measure_latency(session, x, cfg)
    return stats.p50, stats.runtime_p50


def benchmark_app(xml: Path, seconds: float, folder: Path) -> float | None:
    """benchmark_app's median latency in ms, or None when the tool is absent.

    benchmark_app refuses ``-nstreams``/``-nthreads`` next to ``-hint latency`` (a rule of
    its command line), so one stream, one thread and f32 reach the plugin through
    ``-load_config``; the latency hint already means one stream on CPU.
    """
    tool = shutil.which("benchmark_app")
    if tool is None:
        return None
    config = folder / "benchmark_app.json"
    config.write_text(
        json.dumps(
            {
                "CPU": {
                    "NUM_STREAMS": "1",
                    "INFERENCE_NUM_THREADS": str(THREADS),
                    "INFERENCE_PRECISION_HINT": "f32",
                }
            }
        )
    )
    cmd = [
        tool, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
        "-load_config", str(config), "-t", str(max(1, round(seconds * 3))),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False).stdout
    match = re.search(r"Median:\s+([0-9.]+)\s*(ms|us)", out)
    if match is None:
        return None
    return float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)


def measure_in_subprocess(kind: str, backend: str, path: Path, seconds: float) -> tuple[float, float | None]:
    """One measurement in a fresh interpreter, so runtimes' thread pools never meet:
    (p50, the runtime's own p50 or None)."""
    cmd = [sys.executable, __file__, "--measure", kind, backend, str(path), "--seconds", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    p50, runtime = json.loads(out.strip().splitlines()[-1])
    return p50, runtime


def _pct(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{100 * (a - b) / b:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="edgekd runs (and bare runs) per cell")
    parser.add_argument("--models", default="cnn1d_small,resnet1d")
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "BACKEND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    if args.measure:  # the child of measure_in_subprocess
        kind, backend, path = args.measure
        if kind == "edgekd":
            print(json.dumps(edgekd_p50(backend, Path(path), x, args.seconds)))
        else:
            bare = (bare_ort if backend == "onnxruntime" else bare_ov)(Path(path), x, args.seconds)
            print(json.dumps([bare, None]))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekd-fidelity-") as tmp:
        for name in args.models.split(","):
            onnx_path, xml_path = export(name, Path(tmp))
            for backend, path in (("onnxruntime", onnx_path), ("openvino", xml_path)):
                ours, theirs, inside = [], [], []
                for _ in range(args.repeats):  # interleaved: drift hits both alike
                    p50, runtime = measure_in_subprocess("edgekd", backend, path, args.seconds)
                    ours.append(p50)
                    if runtime is not None:
                        inside.append(runtime)
                    theirs.append(measure_in_subprocess("bare", backend, path, args.seconds)[0])
                app = benchmark_app(xml_path, args.seconds, Path(tmp)) if backend == "openvino" else None
                ours_med, bare_med = float(np.median(ours)), float(np.median(theirs))
                inside_med = float(np.median(inside)) if inside else None
                spread = (max(ours) - min(ours)) / ours_med
                rows.append(
                    f"| {name} | {backend} | {ours_med:.4f} | {bare_med:.4f} | {_pct(ours_med, bare_med)} | "
                    + ("—" if backend != "openvino" else "absent" if app is None else f"{app:.4f}")
                    + f" | {_pct(ours_med, app) if app else '—'}"
                    + f" | {'—' if inside_med is None else f'{inside_med:.4f}'}"
                    + f" | {_pct(inside_med, app) if app and inside_med else '—'} | {100 * spread:.1f}%"
                    + (" (noisy)" if spread > 0.05 else "")
                    + " |"
                )
                print(f"# {name} {backend}: edgekd {ours} bare {theirs} app {app}", file=sys.stderr)
    cpu = cpu_fingerprint()
    print(
        f"Machine: {cpu['model']}, {cpu['usable_cores']} usable of {cpu['logical_cores']} logical cores "
        f"(load average {os.getloadavg()[0]:.2f}), {platform.platform()}; {THREADS} thread, batch 1, "
        f"static [1, 2, 128] float32; {args.repeats} repeats of >= {args.seconds:g} s and >= 1000 calls.\n"
    )
    print(
        "| model | runtime | edgekd p50 ms (median of runs) | bare loop p50 ms | edgekd vs bare | "
        "benchmark_app median ms | edgekd vs benchmark_app | edgekd runtime_p50 ms | "
        "runtime_p50 vs benchmark_app | edgekd p50 spread (max-min)/median |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
