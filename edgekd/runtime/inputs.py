"""What a model takes and how frames are fed to it: input checks and the batched prediction pass.

Standard library and numpy only: this file also runs on a device without edgekd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def first_line(exc: BaseException) -> str:
    """``Type: last meaningful line`` of a runtime's (often multi-line) error text."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def input_mismatch(
    model_shape: Any, batch_shape: Any, what: str = "a batch of the data's frames"
) -> str | None:
    """Why ``batch_shape`` (e.g. the bench's batch [1, 2, 128]) does not fit a model input
    ``model_shape`` (batch first, None for a dynamic axis); None when it fits. The text reads
    "model input [?, 3, 32] does not fit a batch of the data's frames [1, 2, 128]"."""
    want, got = tuple(model_shape), tuple(batch_shape)
    same_rank = len(want) == len(got) and len(want) > 0
    sample_fits = same_rank and all(w is None or w == g for w, g in zip(want[1:], got[1:], strict=True))
    if sample_fits and want[0] in (None, got[0]):
        return None
    shown = "[" + ", ".join("?" if d is None else str(d) for d in want) + "]"
    if sample_fits:
        return f"model input {shown} takes batch {want[0]} only, not the batch {got[0]} of {what} {list(got)}"
    return f"model input {shown} does not fit {what} {list(got)}"


def check_input_spec(types: list[str], accepted: tuple[str, ...], name: str) -> None:
    """ValueError unless the model has exactly one input and its element type is in ``accepted``."""
    if len(types) != 1:
        raise ValueError(f"{name} has {len(types)} inputs; edgekd feeds exactly one (the frames)")
    if types[0] not in accepted:
        raise ValueError(f"{name} takes {types[0]} input; edgekd feeds float32 frames")


def predict_classes(run: Callable[[Any], Any], x: Any, *, static_batch: int | None, batch_size: int) -> Any:
    """Arg-max class of every frame of ``x`` [N, ...], int64 [N].

    A static-batch model (``static_batch`` B) is fed exactly B frames per call, the last
    chunk padded by repeating its last frame (those predictions are dropped); otherwise
    ``batch_size`` frames per call. ValueError when a logit is NaN or Inf.
    """
    step = static_batch if static_batch else batch_size
    preds = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        real = len(chunk)
        if static_batch and real < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
        logits = np.asarray(run(chunk)).reshape(len(chunk), -1)[:real]
        if not np.isfinite(logits).all():  # NaN would argmax to class 0 and score as a prediction
            raise ValueError(f"the model outputs NaN or Inf for frames {start}..{start + real - 1}")
        preds[start : start + real] = logits.argmax(axis=1)
    return preds
