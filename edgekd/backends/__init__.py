"""Runtime backends behind one protocol: ``session_from_artifact(name, path, options).run(x)``.

Importing this package registers the built-in backends ("torch", "onnxruntime",
"openvino", "tensorrt") without importing any runtime: each backend imports its runtime inside
its methods, and :meth:`Backend.unavailable_reason` says why one cannot run here.
"""

from edgekd.backends import onnxruntime_backend, openvino_backend, tensorrt_backend, torch_backend
from edgekd.backends.base import (
    BACKENDS,
    PRECISIONS,
    Backend,
    DeployOption,
    Session,
    SessionOptions,
    session_from_artifact,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "DeployOption",
    "Session",
    "SessionOptions",
    "onnxruntime_backend",
    "openvino_backend",
    "session_from_artifact",
    "tensorrt_backend",
    "torch_backend",
]
