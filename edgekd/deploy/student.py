"""The student ``edgekd deploy`` starts from, checked before any candidate is built.

Every candidate is built from the student and compared with it, so a student that no runtime
loads, that takes other frames, gives another number of classes or computes NaN would only
make every candidate fail, one by one, minutes later. It is refused here, in one line naming
the student file (and the data file when they disagree).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgekd.data.dataset import ArrayDataset
from edgekd.errors import ConfigError, EdgeKDError, InputFileError, ShapeError
from edgekd.models.fit import ModelInput, checkpoint_input

PROBE_FRAMES = 8  # test frames the student is run on: enough to see NaN, cheap for any model


def check_student(student: Path, test: ArrayDataset, data: str) -> None:
    """Refuse a student that does not load, fit the frames and classes of ``test`` (named ``data``
    in messages), or give finite logits ``[n, classes]`` on its first frames."""
    suffix = student.suffix.lower()
    if suffix in (".pt", ".pth"):
        frames, logits = _torch_logits(student, test, data)
    elif suffix == ".onnx":
        frames, logits = _onnx_logits(student, test, data)
    else:
        raise ConfigError(
            f"cannot deploy {student.name}: the student must be a .pt checkpoint or an .onnx model",
            hint="pass the student.pt written by `edgekd distill`, or its ONNX export",
        )
    _check_logits(student, logits, len(frames), test, data)


def _probe(test: ArrayDataset, batch: int | None) -> np.ndarray:
    """The first frames of ``test``: ``batch`` of them (repeated when fewer), else up to PROBE_FRAMES."""
    count = batch or min(PROBE_FRAMES, len(test))
    return np.take(test.x, np.arange(count) % len(test), axis=0)


def _torch_logits(student: Path, test: ArrayDataset, data: str) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from edgekd.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(student)
    # Shape and class count, as for an ONNX student (which has no class names): the labels are ids.
    dataclasses.replace(checkpoint_input(student, meta, "student"), class_names=None).check(test, data)
    frames = _probe(test, None)
    try:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(frames)))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputFileError(
            f"student {student} fails on the frames of {data}: {' '.join(str(exc).split())[:200]}",
            hint="use the data the student was trained on, or retrain it",
        ) from None
    if not isinstance(out, torch.Tensor):
        raise InputFileError(f"student {student} returns {type(out).__name__}, not a logits tensor")
    return frames, out.detach().float().numpy()


def _graph_input(student: Path) -> tuple[int | None, ...]:
    """One frame's shape (no batch axis) of the graph's only data input; None marks a free axis."""
    from edgekd.export.onnx_graph import load_onnx_checked

    graph = load_onnx_checked(student).graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]  # old exporters list weights as inputs
    if len(inputs) != 1:
        raise InputFileError(
            f"student {student} has {len(inputs)} inputs; deploy feeds one batch of frames",
            hint="export the student with a single input [N, *frame]",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        raise InputFileError(f"student {student}: its input has no shape", hint="re-export it with a shape")
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims[1:])


def _onnx_logits(student: Path, test: ArrayDataset, data: str) -> tuple[np.ndarray, np.ndarray]:
    from edgekd.backends.base import session_from_artifact

    ModelInput(student, "student", _graph_input(student)).check(test, data)
    session = session_from_artifact("onnxruntime", student)  # a model ONNX Runtime cannot load: one line
    frames = _probe(test, session.static_batch)
    try:
        return frames, session.run(frames)
    except EdgeKDError:
        raise
    except Exception as exc:  # ONNX Runtime raises its own classes (Fail, RuntimeException, ...)
        raise InputFileError(
            f"student {student} fails in ONNX Runtime on the frames of {data}: "
            f"{' '.join(str(exc).split())[:200]}",
            hint="re-export the student",
        ) from None


def _check_logits(student: Path, logits: np.ndarray, n: int, test: ArrayDataset, data: str) -> None:
    if logits.ndim != 2 or logits.shape[0] != n:
        raise InputFileError(
            f"student {student} gives outputs of shape {list(logits.shape)} for {n} frames; "
            "expected logits [N, classes]",
            hint="export the student so its first output is the logits",
        )
    if logits.shape[1] != test.num_classes:
        raise ShapeError(
            f"student {student} gives {logits.shape[1]} scores per frame but {data} has "
            f"{test.num_classes} classes",
            hint="use the data the student was trained on",
        )
    if not np.isfinite(logits).all():
        raise InputFileError(
            f"student {student} gives NaN or infinite logits on the first {n} test frames of {data}",
            hint="its weights are broken: export or train it again",
        )
