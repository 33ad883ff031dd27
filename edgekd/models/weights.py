"""Weight files: reading the tensors of a file, and starting a fresh network from them.

The leaf of :mod:`edgekd.models` (as ``timm/models/_helpers.py`` is timm's): it imports nothing
from the package, so the factory (``pretrained_path``) and checkpoints both build on it without
a cycle. Every pickle is read with ``torch.load(weights_only=True)``: a file whose pickle would
import or call anything is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.artifacts import require_file
from edgekd.errors import ConfigError, InputFileError
from edgekd.optional import require_module


def _unpickling_reason(exc: Exception) -> str:
    """The informative line of torch's multi-paragraph weights_only message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line[:160]
    return lines[-1][:160] if lines else "unreadable pickle"


def load_plain_torch(path: Path, label: str, *, refused_hint: str, unreadable_hint: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; one line naming ``label`` and ``path`` when
    the pickle is refused (it would import or call objects) or is not a torch file at all.

    Raises:
        InputFileError: ``{label} {path} is refused: ...`` or ``... is not a readable torch file``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputFileError(
            f"{label} {path} is refused: the file is not plain weights ({_unpickling_reason(exc)})",
            hint=refused_hint,
        ) from None
    except Exception as exc:  # torch.load raises many types on foreign bytes; all mean "not ours"
        raise InputFileError(
            f"{label} {path} is not a readable torch file ({type(exc).__name__})", hint=unreadable_hint
        ) from None


# Keys under which training scripts nest the weights, best first (timm prefers the EMA copy).
_NESTED_STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
# Wrapper prefixes: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrappers(key: str) -> str:
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _read_weights_file(path: Path) -> Any:
    if path.suffix.lower() == ".safetensors":
        safetensors = require_module("safetensors.torch", f"reading weights {path}")
        try:
            return safetensors.load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types on foreign bytes
            raise InputFileError(
                f"weights {path} are not a readable safetensors file ({type(exc).__name__})",
                hint="re-download or re-save the file",
            ) from None
    return load_plain_torch(
        path,
        "weights file",
        refused_hint="save a state_dict (torch.save(model.state_dict(), path)) or use .safetensors",
        unreadable_hint="pass a .pth/.pt state_dict or a .safetensors file",
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``name -> tensor`` on CPU, wrapper prefixes removed.

    Reads a plain state_dict (``.pth``/``.pt``/``.bin``, loaded with ``weights_only=True``, or
    ``.safetensors``), a training checkpoint that nests one (``state_dict_ema``, ``model_ema``,
    ``state_dict`` or ``model``; the EMA copy first, as timm does), or an edgekd checkpoint.

    Raises:
        InputFileError: missing file, unreadable or refused pickle, no tensors inside.
    """
    path = require_file(path, "weights file", hint="set pretrained_path to a local .pth or .safetensors file")
    payload = _read_weights_file(path)
    if isinstance(payload, dict):
        nested = next((payload[k] for k in _NESTED_STATE_KEYS if isinstance(payload.get(k), dict)), None)
        payload = nested if nested is not None else payload
    tensors = (
        {_strip_wrappers(str(k)): v for k, v in payload.items() if isinstance(v, torch.Tensor)}
        if isinstance(payload, dict)
        else {}
    )
    if not tensors:
        raise InputFileError(
            f"weights {path} hold no state_dict (no name -> tensor mapping found)",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    return tensors


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the output layer: timm's ``get_classifier()``, else the last Linear."""
    head = model.get_classifier() if callable(getattr(model, "get_classifier", None)) else None
    if not isinstance(head, nn.Module):
        head = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    prefix = next((name for name, m in model.named_modules() if m is head), None)
    if head is None or prefix is None:
        return set()
    return {f"{prefix}.{key}" if prefix else key for key in head.state_dict()}


def _examples(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def load_pretrained_weights(model: nn.Module, path: str | os.PathLike[str], model_name: str) -> list[str]:
    """Load the weights in ``path`` into ``model`` (in place): every key must fit, except the classifier.

    A classifier whose shape differs (an ImageNet 1000-class head for a 4-class task) is left
    at its fresh initialisation, which is how fine-tuning from ImageNet weights starts. Any
    other missing, unexpected or differently shaped key is an error naming the first ones.

    Returns:
        the classifier keys that were left at their initialisation (empty when all loaded).

    Raises:
        ConfigError: the weights belong to another architecture.
        InputFileError: see :func:`read_state_dict`.
    """
    path = Path(path)
    state = read_state_dict(path)
    own = model.state_dict()
    reinit = sorted(k for k in _classifier_keys(model) if k in state and state[k].shape != own[k].shape)
    for key in reinit:
        del state[key]
    # num_batches_tracked is a BatchNorm step counter, not a weight; older files lack it.
    missing = [k for k in own if k not in state and k not in reinit and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    if missing or unexpected or reshaped:
        problems = [
            f"{len(found)} {what} ({_examples(found)})"
            for what, found in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("of another shape", reshaped),
            )
            if found
        ]
        raise ConfigError(
            f"weights {path} do not fit model {model_name!r}: keys {'; '.join(problems)}",
            hint="use weights saved from this architecture, or set the model name they were saved from",
        )
    model.load_state_dict(state, strict=False)  # checked above, with the two exceptions allowed
    return reinit


__all__ = ["load_plain_torch", "load_pretrained_weights", "read_state_dict"]
