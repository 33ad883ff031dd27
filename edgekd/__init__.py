"""edgekd: distil a large network into a small, fast, verified model on an edge device.

The public Python API (the same functions every ``edgekd`` command runs)::

    import edgekd

    run = edgekd.distill(teacher, student, train=train_ds, val=val_ds, loss="kd", epochs=30, out="runs/kd")
    onnx = edgekd.export(run.student, example=train_ds[0][0], out="runs/kd")
    int8 = edgekd.quantize(onnx.onnx_path, calibration=train_ds, out="runs/kd")
    report = edgekd.bench([onnx.onnx_path, int8.path], data=test_ds, target="x86-cpu-onnxruntime-int8")
    verdict = edgekd.gate(report, target="x86-cpu-onnxruntime-int8")

``edgekd.losses`` holds the losses as ``nn.Module`` s for your own loop. The names below are
public and kept stable; everything else in the package is private. They resolve on first use,
so ``import edgekd`` (and ``edgekd --help``) imports neither torch nor onnx.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "distill": "edgekd.api.distill_api",
    "export": "edgekd.api.export_api",
    "quantize": "edgekd.api.quantize_api",
    "bench": "edgekd.api.bench_api",
    "gate": "edgekd.api.gate_api",
    "run": "edgekd.api.workflows",
    "deploy": "edgekd.api.workflows",
    "search": "edgekd.api.workflows",
    "qat": "edgekd.api.workflows",
    "ensemble": "edgekd.api.workflows",
    "targets": "edgekd.api.workflows",
    "DistillResult": "edgekd.api.results",
    "ExportResult": "edgekd.api.results",
    "QuantizeResult": "edgekd.api.results",
    "BenchReport": "edgekd.api.results",
    "GateVerdict": "edgekd.api.results",
    "RunResult": "edgekd.api.results",
    "DeployResult": "edgekd.api.workflows",
    "SearchResult": "edgekd.api.workflows",
    "EdgeKDError": "edgekd.errors",
}
_SUBMODULES = ("losses",)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve lazily
    from edgekd import losses
    from edgekd.api.bench_api import bench
    from edgekd.api.distill_api import distill
    from edgekd.api.export_api import export
    from edgekd.api.gate_api import gate
    from edgekd.api.quantize_api import quantize
    from edgekd.api.results import (
        BenchReport,
        DistillResult,
        ExportResult,
        GateVerdict,
        QuantizeResult,
        RunResult,
    )
    from edgekd.api.workflows import DeployResult, SearchResult, deploy, ensemble, qat, run, search, targets
    from edgekd.errors import EdgeKDError


class _Package(types.ModuleType):
    """This package's module object. The public verbs share their names with internal
    subpackages (``edgekd.export`` the function, ``edgekd/export/`` the exporters): importing a
    subpackage must not replace the function on the package, so that ``edgekd.export(...)``
    works whatever was imported before. The subpackages stay importable by their full name
    (``from edgekd.export.onnx_export import ...``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"edgekd.{name}")
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, *_SUBMODULES})


__all__ = [
    "BenchReport",
    "DeployResult",
    "DistillResult",
    "EdgeKDError",
    "ExportResult",
    "GateVerdict",
    "QuantizeResult",
    "RunResult",
    "SearchResult",
    "__version__",
    "bench",
    "deploy",
    "distill",
    "ensemble",
    "export",
    "gate",
    "losses",
    "qat",
    "quantize",
    "run",
    "search",
    "targets",
]
