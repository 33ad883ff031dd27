"""Optional dependencies, imported when a feature first needs them.

edgekd installs without h5py, Pillow, onnxruntime or safetensors; each is needed by one kind of
input only (a RadioML 2018 file, an image folder, an ONNX teacher, ``.safetensors`` weights).
A missing one is one clear line naming what needed it and how to install it, not a traceback.
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
