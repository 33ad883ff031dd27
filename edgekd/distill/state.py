"""What a training run leaves in its output folder, and how it resumes exactly.

Files (written by rank 0 only, each atomically: temp file + rename)::

    train_state.pt   resume state: {"format": "edgekd.train-state/2", "fingerprint": {...},
                     **RunState.state_dict()} (``edgekd.distill.run_state``): model, objective
                     (projectors), optimizer, GradScaler, EMA, RNG states, epoch, batch order
                     and position in it, step, the epoch's running loss, history, best weights
    best.pt, last.pt {"format": "edgekd.weights/1", "epoch", "val_accuracy", "state_dict"}
    metrics.csv, metrics.jsonl   one row per epoch

A ``train-state/1`` file (one flat dict, edgekd before the RunState) is still read.
Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.artifacts import atomic_path, atomic_write_text
from edgekd.distill.run_state import STATE_KEYS, from_v1_layout
from edgekd.errors import ConfigError, InputFileError

STATE_FILE = "train_state.pt"
STATE_FORMAT = "edgekd.train-state/2"
STATE_FORMAT_V1 = "edgekd.train-state/1"
WEIGHTS_FORMAT = "edgekd.weights/1"


def save_state(out_dir: Path, fingerprint: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``out_dir/train_state.pt`` atomically (a SIGKILL leaves the previous one whole).

    ``state`` is ``RunState.state_dict()``; ``fingerprint`` names the run (see ``load_state``).
    """
    with atomic_path(out_dir / STATE_FILE) as tmp:
        torch.save({"format": STATE_FORMAT, "fingerprint": fingerprint, **state}, tmp)


def load_state(out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved ``RunState.state_dict()``, or None when there is none; a foreign run's state is an error.

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
    state = _current_layout(state, path)
    saved = state.get("fingerprint", {})
    changed = sorted(k for k in {*saved, *fingerprint} if saved.get(k) != fingerprint.get(k))
    if changed:
        detail = ", ".join(f"{k} {saved.get(k)!r} -> {fingerprint.get(k)!r}" for k in changed)
        raise ConfigError(
            f"cannot resume from {path}: the run's settings changed ({detail})",
            hint="resume with the original settings, or use a new output folder",
        )
    return state


def _current_layout(state: Any, path: Path) -> dict[str, Any]:
    """``state`` checked for its format tag and keys, a ``train-state/1`` one converted."""
    tag = state.get("format") if isinstance(state, dict) else None
    if tag not in (STATE_FORMAT, STATE_FORMAT_V1):
        if isinstance(tag, str) and tag.startswith("edgekd.train-state/"):
            raise InputFileError(
                f"{path} is a resume state in format {tag!r}, which this edgekd cannot read",
                hint="resume with the edgekd that wrote it, or delete it to start afresh",
            )
        raise InputFileError(f"{path} is not an edgekd resume state", hint="delete it to start afresh")
    try:
        body = from_v1_layout(state) if tag == STATE_FORMAT_V1 else {k: state[k] for k in STATE_KEYS}
    except KeyError as exc:
        raise InputFileError(
            f"resume state {path} ({tag}) lacks the entry {exc}", hint="delete it to start afresh"
        ) from None
    return {"fingerprint": state.get("fingerprint", {}), **body}


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
