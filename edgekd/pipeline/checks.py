"""What a model file takes and gives, checked against data before a stage uses (or writes) it.

Every mismatch between a model and its data names both files: the model (teacher, student)
and the data (an npz, a RadioML file, an image folder), so the one line a user sees says
which two things disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError, ShapeError

Log = Callable[[str], None]
# A check run on freshly loaded data before it is used or written: (dataset, how to name it).
# The dataset is an ArrayDataset or a map-style dataset (edgekd.data.mapstyle): its frames are
# compared as the network takes them (network_input_shape: raw uint8 pixels [1, S, S] -> [3, S, S]).
DataCheck = Callable[[Any, str], None]


def _quiet(_: str) -> None:
    pass


def data_label(dataset: Any, fallback: str | Path = "the data") -> str:
    """How messages name ``dataset``: its source (e.g. ``dataset /runs/x/data.npz``), else ``fallback``."""
    return dataset.source or str(fallback)


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """The frames a model file takes and the classes it gives.

    ``input_shape``: one frame, no batch axis; None in an axis the model leaves free, None
    altogether when unknown. ``num_classes`` / ``class_names``: None when the file does not say.
    """

    path: Path
    role: str  # "teacher", "student", "model": how messages name it
    input_shape: tuple[int | None, ...] | None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.role} {self.path}"

    @property
    def shown_shape(self) -> list[int | str]:
        """``input_shape`` for a message, ``?`` in a free axis."""
        return ["?" if d is None else d for d in self.input_shape or ()]

    def takes(self, frame: tuple[int, ...] | list[int]) -> bool:
        """Whether frames of shape ``frame`` (no batch axis) fit the model (True when unknown)."""
        want = self.input_shape
        if want is None:
            return True
        if len(want) != len(frame):
            return False
        return all(w is None or w == int(g) for w, g in zip(want, frame, strict=True))

    def check(self, dataset: Any, data: str) -> None:
        """ShapeError / ConfigError naming the model file and ``data`` unless the frames (as the
        network takes them) and classes of ``dataset`` are those the model was made for."""
        from edgekd.data.batches import network_input_shape

        got = [int(d) for d in network_input_shape(dataset)]
        if not self.takes(got):
            raise ShapeError(
                f"{self.label} takes frames of shape {self.shown_shape} but {data} holds frames "
                f"of shape {got}",
                hint=f"use data of the shape the {self.role} was trained on, or retrain it",
            )
        if self.num_classes is not None and self.num_classes != dataset.num_classes:
            raise ShapeError(
                f"{self.label} gives {self.num_classes} class scores but {data} has "
                f"{dataset.num_classes} classes {list(dataset.class_names)}",
                hint=f"use a {self.role} trained on these classes, or data of its classes",
            )
        if self.class_names and list(self.class_names) != list(dataset.class_names):
            raise ConfigError(
                f"{self.label} was trained on classes {list(self.class_names)} but {data} has "
                f"classes {list(dataset.class_names)}",
                hint=f"use a {self.role} trained on these classes, or data of its classes (same order)",
            )


def checkpoint_input(path: Path, meta: Any, role: str) -> ModelInput:
    """The :class:`ModelInput` of an edgekd checkpoint from its metadata (``CheckpointMeta``)."""
    return ModelInput(
        path=path,
        role=role,
        input_shape=tuple(meta.input_shape),
        num_classes=meta.num_classes,
        class_names=tuple(meta.class_names) or None,
    )


def onnx_teacher_input(path: Path, teacher: Any) -> ModelInput:
    """The :class:`ModelInput` of an :class:`edgekd.models.onnx_teacher.OnnxTeacher`."""
    return ModelInput(
        path=path,
        role="teacher",
        input_shape=tuple(teacher.input_shape),
        num_classes=teacher.num_classes,
        class_names=tuple(teacher.class_names) if teacher.class_names else None,
    )


def read_teacher_input(path: Path) -> ModelInput:
    """Open a teacher file (checkpoint or ONNX) once and say what it takes: refused here when
    the file itself is bad (missing, corrupt, untrusted), before any stage runs."""
    from edgekd.artifacts import require_file
    from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path

    path = require_file(path, "teacher checkpoint", hint="set teacher.checkpoint to an existing file")
    if is_onnx_path(path):
        return onnx_teacher_input(path, OnnxTeacher(path))
    from edgekd.models.checkpoint import load_checkpoint

    _model, meta = load_checkpoint(path)
    return checkpoint_input(path, meta, "teacher")


def target_check(target: Any, target_file: str | Path) -> DataCheck:
    """A :data:`DataCheck`: the target profile's ``input_shape`` (batch first) meets the frames."""

    def check(dataset: Any, data: str) -> None:
        from edgekd.data.batches import network_input_shape

        frame = [int(d) for d in network_input_shape(dataset)]
        if target.input_shape is not None and list(target.input_shape[1:]) != frame:
            raise ShapeError(
                f"target {target_file} has input_shape {list(target.input_shape)} but {data} holds "
                f"frames of shape {frame}",
                hint="use the data the target's model takes, or fix the target's input_shape",
            )

    return check


def run_checks(checks: Sequence[DataCheck], dataset: Any, data: str) -> None:
    for check in checks:
        check(dataset, data)
