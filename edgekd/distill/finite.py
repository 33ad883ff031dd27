"""Non-finite teacher outputs and losses stop a training run, naming the teacher and the step.

A live teacher (run per batch, not cached) that emits NaN or +-inf, or a loss that overflows,
would otherwise turn the student's weights into NaN and be noticed, if at all, as a
"diverged" epoch. ``FiniteWatch`` keeps one device-side flag pair per step (no host sync
per step, so CUDA stays asynchronous) and reads them every ``every`` steps, before each
resume snapshot and at the end of each epoch: the run stops within ``every`` steps of the
first bad batch, and no state written to disk holds NaN weights.

Under torchrun every rank calls ``check`` at the same steps; the flags are summed over the
ranks there, so a NaN seen by one rank stops all of them with the same error instead of
leaving the others waiting in the next collective.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekd.distill import distributed as ddp
from edgekd.errors import ConfigError, InputFileError

#: Steps between reads of the flags (each read is one host-device sync).
CHECK_EVERY = 32


def describe_teacher(teacher: Any) -> str:
    """``teacher <file>`` for file-backed teachers (ONNX), else ``teacher <ClassName>``."""
    path = getattr(teacher, "path", None)
    return f"teacher {path}" if path is not None else f"teacher {type(teacher).__name__}"


class FiniteWatch:
    """Records whether each step's teacher outputs and loss were finite; ``check`` raises.

    ``teacher_name`` appears in the error (e.g. ``teacher runs/t/teacher.pt``).
    """

    def __init__(self, device: torch.device, teacher_name: str = "teacher", every: int = CHECK_EVERY) -> None:
        self.device = device  # the training device: NCCL reduces CUDA tensors, gloo CPU ones
        self.teacher_name = teacher_name
        self.every = every
        self._pending: list[tuple[tuple[int, int, int], torch.Tensor]] = []

    def observe(
        self, step: int, epoch: int, batch: int, teacher: list[torch.Tensor], loss: torch.Tensor
    ) -> None:
        """Note step ``step`` (1-based; ``batch`` 1-based in ``epoch``): teacher tensors, loss."""
        loss = loss.detach()
        if teacher:
            teacher_ok = torch.stack([torch.isfinite(t).all() for t in teacher]).all().to(loss.device)
        else:
            teacher_ok = torch.ones((), dtype=torch.bool, device=loss.device)
        self._pending.append(((step, epoch, batch), torch.stack([teacher_ok, torch.isfinite(loss).all()])))

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def check(self, ctx: ddp.DistContext) -> None:
        """Raise for the first step noted since the last check whose flags were not both true.

        InputFileError when the teacher gave NaN/inf, ConfigError when only the loss did.
        """
        pending, self._pending = self._pending, []
        flags = torch.stack([f for _, f in pending]) if pending else torch.ones((0, 2), dtype=torch.bool)
        bad_here = int((~flags).any(dim=1).sum()) if pending else 0  # the one host sync
        bad_total = bad_here
        if ctx.enabled:
            count = torch.tensor([float(bad_here)], dtype=torch.float64, device=self.device)
            bad_total = int(ddp.all_reduce_sum(count, ctx).item())
        if bad_total == 0:
            return
        if bad_here == 0:
            raise InputFileError(
                f"training stopped: another process (rank) saw NaN or infinite values from the "
                f"{self.teacher_name} or in the loss",
                hint="see that rank's error; check the teacher and the data",
            )
        rows = flags.cpu()
        index = int((~rows).any(dim=1).nonzero()[0])
        (step, epoch, batch), (teacher_ok, _loss_ok) = pending[index][0], rows[index].tolist()
        where = f"step {step} (epoch {epoch}, batch {batch})"
        if not teacher_ok:
            raise InputFileError(
                f"the {self.teacher_name} gave NaN or infinite logits or features in {where}",
                hint="check the teacher's weights and the data; a teacher that overflows in "
                "fp16/bf16 can run with train.amp: off",
            )
        raise ConfigError(
            f"the training loss became NaN or infinite in {where}: training diverged",
            hint="lower train.lr, set train.grad_clip, or check the loss terms' weights and parameters",
        )
