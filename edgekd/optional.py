"""Optional dependencies, imported when a feature first needs them.

Some modules are needed by one kind of input only: h5py (a RadioML 2018 file), Pillow (an image
folder), onnxruntime (an ONNX teacher), safetensors (``.safetensors`` weights, which comes with
the ``vision`` extra's timm). They are imported on first use, so an install that lacks one (a
trimmed device image, a package removed by hand) still runs everything else, and a missing one
is one clear line naming what needed it and how to install it, not a traceback.
This module imports nothing from edgekd but the error type, so any layer can use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.errors import RuntimeUnavailable


def require_module(name: str, needed_for: str, package: str | None = None) -> ModuleType:
    """``import name``, or RuntimeUnavailable: ``{needed_for} needs {package}, which is not installed``.

    Args:
        name: the dotted module, e.g. ``"h5py"`` or ``"PIL.Image"``.
        needed_for: what asked for it, as the message's subject, e.g. ``"reading images"``.
        package: the distribution that provides it, e.g. ``"Pillow"`` (default: the top-level
            module); the hint is ``pip install <package in lower case>``.

    >>> h5py = require_module("h5py", "reading RadioML 2018 HDF5 files")
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        package = package or name.partition(".")[0]
        raise RuntimeUnavailable(
            f"{needed_for} needs {package}, which is not installed", hint=f"pip install {package.lower()}"
        ) from None


__all__ = ["require_module"]
