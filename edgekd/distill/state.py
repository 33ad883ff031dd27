"""What a training run leaves in its output folder, and how it resumes exactly.

Files (written by rank 0 only, each atomically: temp file + rename)::

    train_state.pt   resume state: model, objective (projectors), optimizer, GradScaler,
                     EMA, RNG states (torch CPU/CUDA, numpy, python), epoch, position in the
                     epoch's shuffled order, step, history, best weights so far
    best.pt, last.pt {"format": "edgekd.weights/1", "epoch", "val_accuracy", "state_dict"}
    metrics.csv, metrics.jsonl   one row per epoch

The learning rate is a pure function of the step (``schedule.lr_at``), so the step *is*
the scheduler state. Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.artifacts import atomic_path, atomic_write_text
from edgekd.errors import ConfigError, InputFileError

STATE_FILE = "train_state.pt"
STATE_FORMAT = "edgekd.train-state/1"
WEIGHTS_FORMAT = "edgekd.weights/1"


class ModelEMA:
    """Exponential moving average of a model's floating-point state (weights and BN statistics)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()  # safe: nn.Module.eval(), inference mode
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, live in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema.dtype.is_floating_point:
                ema.lerp_(live.detach(), 1.0 - self.decay)
            else:
                ema.copy_(live)


def rng_states(numpy_rng: np.random.Generator) -> dict[str, Any]:
    """Every random state the loop consumes: torch (CPU, CUDA), the shuffling numpy Generator, python."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": numpy_rng.bit_generator.state,
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any], numpy_rng: np.random.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_rng.bit_generator.state = states["numpy"]
    random.setstate(states["python"])


def save_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write ``out_dir/train_state.pt`` atomically (a SIGKILL leaves the previous one whole)."""
    with atomic_path(out_dir / STATE_FILE) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_state(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved resume state, or None when there is none; a foreign run's state is an error.

    ``fingerprint`` (frame count, batch size, epochs, seed, world size...) must equal the
    one saved: resuming with other settings would not continue the same run.
    """
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputFileError(
            f"resume state {path} is unreadable ({type(exc).__name__})", hint="delete it to start afresh"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputFileError(f"{path} is not an edgekd resume state", hint="delete it to start afresh")
    saved = state.get("fingerprint", {})
    changed = sorted(k for k in {*saved, *fingerprint} if saved.get(k) != fingerprint.get(k))
    if changed:
        detail = ", ".join(f"{k} {saved.get(k)!r} -> {fingerprint.get(k)!r}" for k in changed)
        raise ConfigError(
            f"cannot resume from {path}: the run's settings changed ({detail})",
            hint="resume with the original settings, or use a new output folder",
        )
    return state


def save_weights(path: Path, model: nn.Module, epoch: int, val_accuracy: float) -> None:
    state_dict = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    payload = {
        "format": WEIGHTS_FORMAT,
        "epoch": epoch,
        "val_accuracy": val_accuracy,
        "state_dict": state_dict,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv and metrics.jsonl from the whole history (consistent after a resume)."""
    if not history:
        return
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
