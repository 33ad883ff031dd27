"""A hand-made, valid bench document (ok, skipped and failed entries) for renderer tests."""

from __future__ import annotations

import copy
from typing import Any

from edgekd.bench.schema import BENCH_SCHEMA


def _latency(p50: float) -> dict[str, Any]:
    return {
        "runs": 200,
        "p50": p50,
        "p90": p50 * 1.1,
        "p95": p50 * 1.2,
        "p99": p50 * 1.5,
        "mean": p50 * 1.05,
        "std": p50 * 0.05,
        "cv": 0.05,
        "min": p50 * 0.9,
        "max": p50 * 2,
        "first_inference_ms": p50 * 10,
        "throughput_per_s": 1000 / p50,
    }


def _ok(backend: str, precision: str, executed: str, p50: float, acc: float, size: int) -> dict[str, Any]:
    return {
        "id": f"{backend}/{precision}",
        "backend": backend,
        "precision": precision,
        "executed_precision": executed,
        "status": "ok",
        "reason": None,
        "artifact": {"path": f"{backend}_{precision}.bin", "sha256": "ab" * 32, "size_bytes": size},
        "params": 12345,
        "macs": 678900,
        "load_ms": 12.5,
        "latency_ms": _latency(p50),
        "noisy": False,
        "accuracy": {
            "n": 40,
            "overall": acc,
            "per_class": {"BPSK": acc, "QPSK": acc - 0.1},
            "per_snr": {"-10": acc - 0.3, "0": acc - 0.1, "10": acc},
            "confusion": [[18, 2], [4, 16]],
        },
        "agreement_with_reference": 0.97,
    }


def sample_doc(name: str = "tiny cnn") -> dict[str, Any]:
    skipped = _ok("tensorrt", "int8", "int8", 1.0, 0.5, 1)
    skipped.update(
        status="skipped",
        reason="tensorrt is not installed: pip install tensorrt",
        executed_precision=None,
        load_ms=None,
        latency_ms=None,
        noisy=None,
        accuracy=None,
        agreement_with_reference=None,
    )
    failed = copy.deepcopy(skipped)
    failed.update(
        id="openvino/bf16",
        backend="openvino",
        precision="bf16",
        status="failed",
        reason="ShapeError: input of shape [4, 2, 128] does not fit",
    )
    return {
        "schema": BENCH_SCHEMA,
        "created": "2025-01-01T00:00:00+00:00",
        "name": name,
        "environment": {
            "cpu": {"model": "Test CPU", "logical_cores": 4, "isa": {"avx2": True, "avx512f": False}},
            "os": "Linux",
            "python": "3.11.7",
            "libraries": {"numpy": "2.0"},
        },
        "dataset": {
            "name": "synthetic",
            "split": "test",
            "n": 40,
            "class_names": ["BPSK", "QPSK"],
            "snrs": [-10, 0, 10],
        },
        "settings": {
            "warmup_runs": 20,
            "warmup_seconds": 0.3,
            "min_runs": 200,
            "min_seconds": 1.0,
            "max_seconds": 20.0,
            "batch_size": 1,
            "threads": 1,
            "accuracy_batch_size": 256,
        },
        "reference": "torch/fp32",
        "entries": [
            _ok("torch", "fp32", "fp32", 0.50, 0.90, 40_000),
            _ok("onnxruntime", "fp32", "fp32", 0.20, 0.90, 38_000),
            _ok("onnxruntime", "int8", "int8", 0.12, 0.88, 12_000),
            skipped,
            failed,
        ],
    }
