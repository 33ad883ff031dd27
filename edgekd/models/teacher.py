"""Teachers: a checkpoint or an ONNX file, opened and checked against the data it will teach on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.artifacts import require_file
from edgekd.models.checkpoint import load_checkpoint
from edgekd.models.fit import ModelInput, checkpoint_input, data_label, onnx_teacher_input
from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path


def _open_teacher(path: Path, threads: int | None = None) -> tuple[Any, ModelInput, str]:
    """The teacher in ``path``, what it takes and gives, and its name for messages; ``threads``:
    ONNX Runtime's intra-op threads for an ONNX teacher (None: edgekd's default)."""
    if is_onnx_path(path):
        teacher = OnnxTeacher(path, threads=threads)
        return teacher, onnx_teacher_input(path, teacher), path.name
    model, meta = load_checkpoint(path)
    return model, checkpoint_input(path, meta, "teacher"), meta.model_name


def load_teacher(path: Path, dataset: Any, *, threads: int | None = None) -> tuple[Any, str]:
    """The teacher in ``path`` (an edgekd checkpoint, or an ONNX file run as a black box) and its
    name for messages, checked against ``dataset`` (frame shape, class count and names; a
    mismatch names both files). ``threads``: ONNX Runtime's intra-op threads for an ONNX
    teacher (a PyTorch teacher runs on the training's torch threads).

    Returns:
        (the teacher: an ``nn.Module`` in eval mode or an :class:`OnnxTeacher`, its model name).

    Raises:
        InputFileError / UntrustedFileError: the file does not load; ShapeError / ConfigError:
            it does not fit the data.
    """
    teacher, fits, name = _open_teacher(path, threads)
    fits.check(dataset, data_label(dataset))
    return teacher, name


def read_teacher_input(path: Path) -> ModelInput:
    """Open a teacher file (checkpoint or ONNX) once and say what it takes: refused here when
    the file itself is bad (missing, corrupt, untrusted), before any stage runs."""
    path = require_file(path, "teacher checkpoint", hint="set teacher.checkpoint to an existing file")
    return _open_teacher(path)[1]


__all__ = ["load_teacher", "read_teacher_input"]
