"""The Python API behind ``edgekd.distill``, ``edgekd.export``, ... and every ``edgekd`` command.

Its public names are exported by :mod:`edgekd` (``import edgekd; edgekd.distill(...)``); the
command line is a thin layer over the same functions (one code path). Names resolve lazily,
from the one table of public names in :mod:`edgekd`, so importing :mod:`edgekd` or running
``edgekd --help`` imports neither torch nor onnx.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgekd import _PUBLIC


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


__all__ = sorted(_PUBLIC)
