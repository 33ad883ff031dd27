"""What the Python API's functions return: plain dataclasses, no dicts to dig through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class DistillResult:
    """A finished distillation.

    Attributes:
        student: the trained student (``nn.Module``, eval mode, best validation epoch's weights).
        checkpoint: ``out/student.pt`` (an edgekd checkpoint, or the plain state_dict of a
            student module edgekd cannot rebuild by name); None without ``out``.
        teacher: the teacher it learnt from (an ``nn.Module`` or an ONNX teacher).
        teacher_checkpoint: the teacher's file, when it has one (a recipe's, or a trained one).
        val_accuracy, best_epoch, teacher_val_accuracy: the figures of the run.
        history: one record per epoch (epoch, train_loss, val_accuracy, lr, seconds).
        out_dir: the run folder (None without ``out``).
    """

    student: Any
    checkpoint: Path | None
    teacher: Any
    teacher_checkpoint: Path | None
    val_accuracy: float
    best_epoch: int
    teacher_val_accuracy: float
    history: list[dict[str, Any]]
    out_dir: Path | None
    data: Path | None = None  # the recipe's data file (data.npz or data.json), for later stages
    qat_onnx: Path | None = None  # student.qat.onnx, when quantization-aware distillation ran
    is_main: bool = True  # False on torchrun ranks other than 0 (they train, rank 0 reports)


@dataclasses.dataclass
class ExportResult:
    """The exported files, each checked against PyTorch on the same frames.

    ``parity`` maps a format ("onnx", "openvino", "tensorrt") to its parity figures (max abs
    error, top-1 agreement, ...) as recorded in the file's manifest.
    """

    onnx_path: Path
    openvino_path: Path | None = None
    tensorrt_path: Path | None = None
    parity: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def paths(self) -> dict[str, Path]:
        """``{"onnx": ..., "openvino": ..., "tensorrt": ...}`` for the formats written."""
        found = {"onnx": self.onnx_path, "openvino": self.openvino_path, "tensorrt": self.tensorrt_path}
        return {k: v for k, v in found.items() if v is not None}


@dataclasses.dataclass
class QuantizeResult:
    """The INT8 model and what its quantizer and the accuracy check recorded.

    ``accuracy`` holds ``fp32`` and ``int8`` accuracy on the validation frames; ``report`` is
    the whole metrics record of the manifest (calibration, agreement, speed-up, warnings).
    """

    path: Path
    kind: str
    accuracy: dict[str, Any]
    report: dict[str, Any]


@dataclasses.dataclass
class BenchReport:
    """A bench: one entry per model (latency percentiles, accuracy, agreement, status).

    ``document`` is the bench.json document (schema in docs/bench-schema.md); ``path`` the
    bench.json written (None when the bench ran without ``out``).
    """

    document: dict[str, Any]
    path: Path | None = None

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """``{"onnxruntime/int8": entry, ...}`` in the order they were measured."""
        return {e["id"]: e for e in self.document.get("entries", [])}

    def table(self) -> Any:
        """The bench as a rich table (what ``edgekd bench`` prints)."""
        from edgekd.bench.table import bench_table

        return bench_table(self.document)

    def print(self, console: Any = None) -> None:
        """:meth:`table` on ``console`` (rich; default stdout)."""
        from edgekd.bench.table import print_bench

        print_bench(self.document, console=console)


@dataclasses.dataclass
class GateVerdict:
    """The verdict of a gate: ``passed``, and every check (metric, current, limit, status)."""

    passed: bool
    checks: list[Any]
    target: str
    entry: str
    problem: str | None
    result: Any = dataclasses.field(repr=False, default=None)  # the internal GateResult

    @property
    def exit_code(self) -> int:
        """0 pass, 1 a budget broken (the ``edgekd gate`` exit code)."""
        return 0 if self.passed else 1

    @property
    def failures(self) -> list[Any]:
        return [c for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def table(self) -> Any:
        """The verdict as a rich table (what ``edgekd gate`` prints)."""
        from edgekd.gate import gate_table

        return gate_table(self.result)

    def print(self, console: Any = None) -> None:
        """:meth:`table` on ``console`` (rich; default stdout)."""
        from rich.console import Console

        (console or Console()).print(self.table())


@dataclasses.dataclass
class RunResult:
    """A whole recipe run (``edgekd run``): the bench, the gate verdict, the time it took."""

    recipe: str
    out_dir: Path
    seconds: float
    bench: BenchReport
    gate: GateVerdict | None

    @property
    def exit_code(self) -> int:
        return self.gate.exit_code if self.gate is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "out_dir": str(self.out_dir),
            "seconds": round(self.seconds, 1),
            "gate": self.gate.to_dict() if self.gate is not None else None,
            "bench": self.bench.document,
        }


def verdict_of(result: Any) -> GateVerdict:
    """The public form of an internal :class:`edgekd.gate.checks.GateResult`."""
    return GateVerdict(
        passed=result.passed,
        checks=list(result.checks),
        target=result.target,
        entry=result.entry_id,
        problem=result.problem,
        result=result,
    )


__all__ = [
    "BenchReport",
    "DistillResult",
    "ExportResult",
    "GateVerdict",
    "QuantizeResult",
    "RunResult",
    "verdict_of",
]
