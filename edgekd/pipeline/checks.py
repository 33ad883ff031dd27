"""Checks a stage runs on data before it uses (or writes) it, and the stages' log callback.

What a model file takes is :class:`edgekd.models.fit.ModelInput` (its ``check`` is a
:data:`DataCheck`); a target profile's input shape is :func:`target_check`. Each names both
files, so the one line a user sees says which two things disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.data.batches import network_input_shape
from edgekd.errors import ShapeError

Log = Callable[[str], None]
# A check run on freshly loaded data before it is used or written: (dataset, how to name it).
# The dataset is an ArrayDataset or a map-style dataset (edgekd.data.mapstyle): its frames are
# compared as the network takes them (network_input_shape: raw uint8 pixels [1, S, S] -> [3, S, S]).
DataCheck = Callable[[Any, str], None]


def _quiet(_: str) -> None:
    pass


def target_check(target: Any, target_file: str | Path) -> DataCheck:
    """A :data:`DataCheck`: the target profile's ``input_shape`` (batch first) meets the frames."""

    def check(dataset: Any, data: str) -> None:
        frame = [int(d) for d in network_input_shape(dataset)]
        if target.input_shape is not None and list(target.input_shape[1:]) != frame:
            raise ShapeError(
                f"target {target_file} has input_shape {list(target.input_shape)} but {data} holds "
                f"frames of shape {frame}",
                hint="use the data the target's model takes, or fix the target's input_shape",
            )

    return check


def run_checks(checks: Sequence[DataCheck], dataset: Any, data: str) -> None:
    """Run each check on ``dataset`` (named ``data`` in messages); the first failure raises."""
    for check in checks:
        check(dataset, data)
