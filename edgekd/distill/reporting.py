"""What a training run shows: a per-epoch progress bar and TensorBoard scalars while it runs,
and at its end the student's held-out accuracy beside its teacher's (:func:`teacher_comparison`).

Both are optional. The bar (rich, on stderr) is for a person at a terminal: the command turns
it on only when stderr is a TTY and ``--quiet`` is not given, and it disappears when the epoch
ends, leaving the epoch's one-line summary. TensorBoard scalars are written when
``torch.utils.tensorboard`` imports (the ``tensorboard`` package is installed:
``pip install 'edgekd[tensorboard]'``, part of the test extra); edgekd does not depend on
it. metrics.csv / metrics.jsonl are written either way (``edgekd.distill.state``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: "Within noise": the student's val accuracy at most this many binomial standard errors below
#: the teacher's.
NOISE_SE = 2.0


class EpochProgress:
    """A transient rich progress bar over the optimizer steps of one epoch at a time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        self.end_epoch()
        self._progress.start()
        self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, completed=done)

    def advance(self) -> None:
        # No loss in the bar: reading it would force a device sync every step.
        self._progress.advance(self._task)

    def end_epoch(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()


class TensorBoardScalars:
    """Per-epoch scalars (loss, accuracy, lr, throughput) in ``<out_dir>/tensorboard``."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    @classmethod
    def open(cls, out_dir: Path, first_epoch: int) -> TensorBoardScalars | None:
        """A writer, or None when TensorBoard is not installed.

        ``first_epoch`` > 1 (a resumed run) purges events a killed run left at or after it.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional
            return None
        purge = first_epoch if first_epoch > 1 else None
        return cls(SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge))

    def write(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        for name, value in record.items():
            if name != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(f"train/{name}", value, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def teacher_comparison(student_acc: float, teacher_acc: float, frames: int, *, distilled: bool) -> list[str]:
    """Lines for the end of a run: the student's val accuracy beside its teacher's, then, when
    the student learnt from the teacher (``distilled``), a warning if it ends within noise of
    it or above it: the teacher then has little left to teach, and KD's gain is bounded.

    Noise is :data:`NOISE_SE` binomial standard errors of the teacher's accuracy on the
    ``frames`` val frames, ``sqrt(p * (1 - p) / frames)``. Accuracies are fractions in [0, 1].
    """
    se = math.sqrt(teacher_acc * (1.0 - teacher_acc) / max(frames, 1))
    gap = 100.0 * (student_acc - teacher_acc)
    lines = [
        f"student val acc {student_acc:.2%}, teacher {teacher_acc:.2%} ({gap:+.2f} points; "
        f"{frames:,} val frames, binomial SE {100.0 * se:.2f} points)"
    ]
    if not distilled:
        return lines
    advice = (
        "the teacher has little left to teach, so KD's gain is bounded "
        "(measure it against the student trained alone, distill.kd.loss=ce, or use a stronger teacher)"
    )
    if student_acc > teacher_acc:
        lines.append(f"warning: the student ends above its teacher on val ({gap:+.2f} points): {advice}")
    elif teacher_acc - student_acc <= NOISE_SE * se:
        lines.append(
            f"warning: the student ends within noise of its teacher on val ({gap:+.2f} points, "
            f"within {NOISE_SE:g} binomial SE = {100.0 * NOISE_SE * se:.2f} points): {advice}"
        )
    return lines
