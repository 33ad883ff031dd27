"""Did INT8 help? Speed-up and size against FP32 on this machine, plus op coverage.

The answer is only true for the machine that measured it: an x86 CPU without VNNI,
an ARM core and a Jetson rank the same two files differently. It is recorded with the
thread count so a reader knows what was compared.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.quantize.config import NoSpeedupError


@dataclass
class Int8Assessment:
    """``fp32_ms``/``int8_ms``: median batch-1 latency in ms with ``threads`` threads;
    ``speedup`` = fp32_ms / int8_ms (> 1 means INT8 is faster); ``size_ratio`` = INT8 bytes /
    FP32 bytes (sidecar files included); ``coverage``: see ``coverage.op_coverage``
    (absent for runtimes whose graph is not QDQ ONNX); ``warnings``: one line each."""

    fp32_ms: float
    int8_ms: float
    speedup: float
    fp32_bytes: int
    int8_bytes: int
    size_ratio: float
    threads: int
    coverage: dict[str, Any] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        text = f"INT8 {self.speedup:.2f}x vs FP32 ({self.int8_ms:.3g} ms vs {self.fp32_ms:.3g} ms), "
        text += f"size {self.size_ratio:.2f}x"
        if self.coverage:
            text += (
                f", {self.coverage['int8_nodes']} nodes INT8 / {self.coverage['float_nodes']} float, "
                f"{self.coverage['mac_fraction_int8']:.0%} of MACs in INT8"
            )
        return text


class CheckedReport:
    """Mixin of the quantizers' report dataclasses: plain data with the ``parity`` field
    (a ParityReport or None) in ParityReport's own layout."""

    parity: Any

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data["parity"] = self.parity.to_dict() if self.parity else None
        return data


def model_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a model: ``.onnx`` plus its external-data files, ``.xml`` plus its ``.bin``."""
    path = Path(path)
    total = path.stat().st_size
    if path.suffix == ".xml":
        weights = path.with_suffix(".bin")
        return total + (weights.stat().st_size if weights.exists() else 0)
    if path.suffix == ".onnx":
        from edgekd.export.onnx_graph import external_data_files

        total += sum((path.parent / name).stat().st_size for name in external_data_files(path))
    return total


def assess_int8(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    fp32_ms: float,
    int8_ms: float,
    threads: int,
    *,
    coverage: dict[str, Any] | None = None,
    require_speedup: bool = False,
    runtime: str = "ONNX Runtime",
) -> Int8Assessment:
    """Combine measured latencies with file sizes; warn (or, with ``require_speedup``, raise
    NoSpeedupError) when INT8 is not faster than FP32, and warn when some compute stays in float."""
    fp32_bytes, int8_bytes = model_bytes(fp32_path), model_bytes(int8_path)
    result = Int8Assessment(
        fp32_ms=fp32_ms,
        int8_ms=int8_ms,
        speedup=fp32_ms / int8_ms if int8_ms > 0 else float("inf"),
        fp32_bytes=fp32_bytes,
        int8_bytes=int8_bytes,
        size_ratio=int8_bytes / fp32_bytes,
        threads=threads,
        coverage=coverage,
    )
    if result.speedup <= 1.0:
        line = (
            f"INT8 did not help on this machine: {runtime} INT8 {int8_ms:.3g} ms vs FP32 {fp32_ms:.3g} ms "
            f"at batch 1 with {threads} thread(s) ({result.speedup:.2f}x)"
        )
        if require_speedup:
            raise NoSpeedupError(
                line,
                hint="deploy the FP32 model, try another runtime or activation type, "
                "or unset quantize.require_speedup to keep INT8 for its size",
            )
        result.warnings.append(line)
    if coverage and coverage["float_compute_nodes"]:
        names = ", ".join(coverage["float_compute_nodes"][:5])
        result.warnings.append(
            f"{len(coverage['float_compute_nodes'])} compute node(s) stay in float ({names}); "
            f"{coverage['mac_fraction_int8']:.0%} of MACs run in INT8"
        )
    return result


def int8_agreement(
    reference: np.ndarray,
    candidate: np.ndarray,
    minimum: float,
    what: str,
    *,
    reference_name: str,
    candidate_name: str,
) -> Any:
    """ParityReport of INT8 logits ``candidate`` against FP32's ``reference`` (both ``[N, K]``):
    INT8 logits legitimately differ by a few quantization steps, so only top-1 agreement
    (at least ``minimum``, a fraction) decides, and NaN/Inf. Every quantizer judges with it."""
    from edgekd.export.parity import ParityConfig, compare_outputs

    rule = ParityConfig(atol=math.inf, rtol=0.0, min_top1_agreement=minimum)
    return compare_outputs(
        reference, candidate, rule, what, reference_name=reference_name, candidate_name=candidate_name
    )
