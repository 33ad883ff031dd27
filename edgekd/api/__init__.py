"""The Python API behind ``edgekd.distill``, ``edgekd.export``, ... and every ``edgekd`` command.

Its public names are exported by :mod:`edgekd` (``import edgekd; edgekd.distill(...)``); the
command line is a thin layer over the same functions (one code path). Names resolve lazily,
so importing :mod:`edgekd` or running ``edgekd --help`` imports neither torch nor onnx.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module of edgekd.api that defines it
PUBLIC = {
    "distill": "distill_api",
    "export": "export_api",
    "quantize": "quantize_api",
    "bench": "bench_api",
    "gate": "gate_api",
    "run": "workflows",
    "deploy": "workflows",
    "search": "workflows",
    "qat": "workflows",
    "ensemble": "workflows",
    "targets": "workflows",
    "DistillResult": "results",
    "ExportResult": "results",
    "QuantizeResult": "results",
    "BenchReport": "results",
    "GateVerdict": "results",
    "RunResult": "results",
}


def __getattr__(name: str) -> Any:
    module = PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgekd.api.{module}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC})


__all__ = sorted(PUBLIC)
