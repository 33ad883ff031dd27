"""What a model file takes and gives, checked against data before a model is used on it.

Every mismatch between a model and its data names both files: the model (teacher, student)
and the data (an npz, a RadioML file, an image folder), so the one line a user sees says
which two things disagree. Plain data and numbers only: this module imports no model code.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from edgekd.data.batches import network_input_shape
from edgekd.errors import ConfigError, ShapeError

_log = logging.getLogger("edgekd.models")
# Model files already told that their class order cannot be checked: a run opens its teacher
# in several stages, and one line says it.
_unchecked_told: set[Path] = set()
#: How an ONNX file gets the class names its order is checked by.
ONNX_CLASS_NAMES_FIX = (
    "add the names in logit order as metadata: "
    "onnx.helper.set_model_props(model, {'class_names': json.dumps(names)}), then onnx.save"
)


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
    # How to give the file class names, when it may lack them (an ONNX file): its absence is
    # then said in one warning line, since nothing can check the class order.
    names_fix: str | None = None

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
        if not self.class_names and self.names_fix and self.path not in _unchecked_told:
            # Reordered labels would run silently, at below-chance accuracy: say it once.
            _unchecked_told.add(self.path)
            _log.warning(
                "%s has no class_names metadata, so its class order cannot be checked against %s %s "
                "(fix: %s)",
                self.label,
                data,
                _shown_names(dataset.class_names),
                self.names_fix,
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
        names_fix=ONNX_CLASS_NAMES_FIX,
    )


def _shown_names(names: Any, limit: int = 6) -> str:
    """``['a', 'b', ...]``: the first ``limit`` class names, for a one-line message."""
    names = [str(n) for n in names]
    return repr(names) if len(names) <= limit else repr(names[:limit])[:-1] + ", ...]"


__all__ = ["ONNX_CLASS_NAMES_FIX", "ModelInput", "checkpoint_input", "data_label", "onnx_teacher_input"]
