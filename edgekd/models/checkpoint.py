"""Checkpoints: the weights plus everything needed to rebuild the network.

A checkpoint is a ``torch.save`` of a dict holding only plain types and tensors::

    {"format": "edgekd.checkpoint/1", "model_name": "resnet1d", "model_kwargs": {...},
     "num_classes": 8, "in_channels": 2, "input_shape": [2, 128], "class_names": [...],
     "metrics": {...}, "state_dict": {name: tensor}}

so it loads with ``torch.load(weights_only=True)``: a file whose pickle would import or
call anything else is refused, never executed. The manifest ``<file>.json`` sits beside it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.artifacts import atomic_path, require_file, write_manifest
from edgekd.errors import ConfigError, EdgeKDError, InputFileError
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.factory import create_model

CHECKPOINT_FORMAT = "edgekd.checkpoint/1"
_REQUIRED = (
    "model_name",
    "model_kwargs",
    "num_classes",
    "in_channels",
    "input_shape",
    "class_names",
    "state_dict",
)


@dataclasses.dataclass
class CheckpointMeta:
    """What a checkpoint says about its network (everything except the weights)."""

    model_name: str
    model_kwargs: dict[str, Any]
    num_classes: int
    in_channels: int
    input_shape: tuple[int, ...]  # one sample, no batch axis, e.g. (2, 128)
    class_names: list[str]
    metrics: dict[str, Any]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain network inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _plain(value: Any, where: str) -> Any:
    """Tuples -> lists; reject anything that weights_only loading would refuse later."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(
        f"checkpoint field {where} holds a {type(value).__name__}, not plain data",
        hint="pass numbers, strings, lists and dicts only",
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    num_classes: int,
    in_channels: int,
    input_shape: tuple[int, ...],
    class_names: list[str],
    metrics: dict[str, Any] | None = None,
    parents: list[str | os.PathLike[str]] | None = None,
    config: dict[str, Any] | None = None,
    kind: str = "checkpoint",
) -> None:
    """Write ``path`` atomically and its manifest (metrics gain ``params`` and ``macs``).

    ``model_name``/``model_kwargs`` must rebuild ``model`` through ``create_model``;
    ``input_shape`` is one sample's shape without the batch axis.
    """
    model = unwrap_model(model)
    input_shape = tuple(int(d) for d in input_shape)
    metrics = {
        "params": count_params(model),
        "macs": count_macs(model, input_shape),
        **_plain(dict(metrics or {}), "metrics"),
    }
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_name": str(model_name),
        "model_kwargs": _plain(dict(model_kwargs), "model_kwargs"),
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_shape": list(input_shape),
        "class_names": [str(c) for c in class_names],
        "metrics": metrics,
        # Detached CPU copies: the file must not depend on the training device.
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    model_record = {k: payload[k] for k in _REQUIRED if k != "state_dict"}
    write_manifest(path, kind, parents=parents, config=config, metrics=metrics, extra={"model": model_record})


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of torch's multi-paragraph weights_only message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line[:160]
    return lines[-1][:160] if lines else "unreadable pickle"


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickles that would import or call arbitrary objects.
        raise InputFileError(
            f"checkpoint {path} is refused: it is not plain weights ({_unpickling_reason(exc)})",
            hint="load only checkpoints written by edgekd, or re-export the weights from trusted code",
        ) from None
    except Exception as exc:  # torch.load raises many types on foreign bytes; all mean "not a checkpoint"
        raise InputFileError(
            f"checkpoint {path} is not a readable torch file ({type(exc).__name__})",
            hint="pass a .pt file written by edgekd distill or save_checkpoint",
        ) from None
    if not isinstance(payload, dict):
        payload = {}
    missing = [key for key in _REQUIRED if key not in payload]
    if missing or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(
            f"{path} is a torch file but not an edgekd checkpoint "
            f"(missing {', '.join(missing) or 'format tag'})",
            hint="pass a .pt file written by edgekd distill or save_checkpoint",
        )
    return payload


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the network from ``path`` and load its weights strictly.

    Returns:
        (model on CPU in eval mode, its metadata).

    Raises:
        InputFileError: missing file, foreign or malicious file, or weights that do not
            fit the network the checkpoint names.
    """
    path = require_file(path, "checkpoint", hint="check the path or run the distill stage first")
    payload = _read_payload(path)
    meta = CheckpointMeta(
        model_name=str(payload["model_name"]),
        model_kwargs=dict(payload["model_kwargs"]),
        num_classes=int(payload["num_classes"]),
        in_channels=int(payload["in_channels"]),
        input_shape=tuple(int(d) for d in payload["input_shape"]),
        class_names=[str(c) for c in payload["class_names"]],
        metrics=dict(payload.get("metrics") or {}),
    )
    try:
        model = create_model(meta.model_name, meta.num_classes, meta.in_channels, **meta.model_kwargs)
    except EdgeKDError as exc:
        raise InputFileError(
            f"checkpoint {path} names model {meta.model_name!r} that cannot be rebuilt here: {exc.one_line()}"
        ) from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())
        raise InputFileError(
            f"checkpoint {path}: weights do not fit model {meta.model_name!r} "
            f"{meta.model_kwargs}: {detail[:200]}",
            hint="the file is corrupt or was written by different code; re-run the stage that wrote it",
        ) from None
    return model.eval(), meta  # safe: nn.Module.eval(), inference mode
