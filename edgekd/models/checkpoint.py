"""Checkpoints: the weights plus everything needed to rebuild the network.

A checkpoint is a ``torch.save`` of a dict holding only plain types and tensors::

    {"format": "edgekd.checkpoint/1", "model_name": "resnet1d", "model_kwargs": {...},
     "num_classes": 8, "in_channels": 2, "input_shape": [2, 128], "class_names": [...],
     "metrics": {...}, "state_dict": {name: tensor}}

so it loads with ``torch.load(weights_only=True)``: a file whose pickle would import or
call anything else is refused, never executed. The manifest ``<file>.json`` sits beside it.

:func:`load_pretrained_weights` starts a freshly built network from a plain weights file
(a timm ``.pth``/``.safetensors``, a training checkpoint, or an edgekd checkpoint) under the
same rule.
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
from edgekd.models.trust import UntrustedFileError, reading_file

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
    # The initial weights' file is provenance (kept in the manifest's config), not a rebuild
    # argument: the trained weights are in this file, and a rebuild must not need that one.
    model_kwargs = {k: v for k, v in model_kwargs.items() if k != "pretrained_path"}
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


def _bad_field(path: Path, field: str, why: str) -> InputFileError:
    return InputFileError(
        f"checkpoint {path}: {field} {why}",
        hint="the file is corrupt or was not written by edgekd; re-run the stage that wrote it",
    )


def _count(path: Path, payload: dict[str, Any], field: str) -> int:
    value = payload[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad_field(path, field, f"must be a positive integer, got {value!r:.60}")
    return value


_MAX_NESTING = 32  # model arguments nest a few levels (ensemble members); a deeper file is not ours


def _is_plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if depth >= _MAX_NESTING:
        return False
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v, depth + 1) for v in value)
    return isinstance(value, dict) and all(
        isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items()
    )


def _checked_meta(path: Path, payload: dict[str, Any]) -> CheckpointMeta:
    """The metadata of ``payload``, each field checked for type and range at the door."""
    name, kwargs = payload["model_name"], payload["model_kwargs"]
    if not isinstance(name, str) or not name.strip():
        raise _bad_field(path, "model_name", f"must be a model name, got {name!r:.60}")
    if not isinstance(kwargs, dict) or not _is_plain(kwargs):
        raise _bad_field(path, "model_kwargs", "must be a mapping of plain values (numbers, strings, lists)")
    num_classes, in_channels = _count(path, payload, "num_classes"), _count(path, payload, "in_channels")
    shape, names = payload["input_shape"], payload["class_names"]
    if (
        not isinstance(shape, (list, tuple))
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)
    ):
        raise _bad_field(path, "input_shape", f"must be a list of positive integers, got {shape!r:.60}")
    if shape[0] != in_channels:
        raise _bad_field(path, "input_shape", f"{list(shape)} does not start with in_channels {in_channels}")
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise _bad_field(path, "class_names", "must be a list of strings")
    if len(names) != num_classes:
        raise _bad_field(path, "class_names", f"has {len(names)} names for num_classes {num_classes}")
    metrics = payload.get("metrics")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _bad_field(path, "state_dict", "must map parameter names to tensors")
    return CheckpointMeta(
        model_name=name,
        model_kwargs=dict(kwargs),
        num_classes=num_classes,
        in_channels=in_channels,
        input_shape=tuple(shape),
        class_names=list(names),
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
    )


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the network from ``path`` and load its weights strictly.

    The network is built under :func:`edgekd.models.trust.reading_file`: the file's model
    name must be a built-in or timm name, or a ``module:`` name the person trusts, and its
    arguments may not name files to read.

    Returns:
        (model on CPU in eval mode, its metadata).

    Raises:
        UntrustedFileError: the file names code or a path that it may not choose.
        InputFileError: missing file, foreign or malicious file, or weights that do not
            fit the network the checkpoint names.
    """
    path = require_file(path, "checkpoint", hint="check the path or run the distill stage first")
    payload = _read_payload(path)
    meta = _checked_meta(path, payload)
    try:
        with reading_file(path, "checkpoint"):
            model = create_model(meta.model_name, meta.num_classes, meta.in_channels, **meta.model_kwargs)
    except UntrustedFileError:
        raise
    except EdgeKDError as exc:
        raise InputFileError(
            f"checkpoint {path} names model {meta.model_name!r} that cannot be rebuilt here: {exc.one_line()}"
        ) from None
    except (RuntimeError, MemoryError, OverflowError) as exc:  # e.g. a width too large to allocate
        raise _bad_field(
            path, "model_kwargs", f"{meta.model_kwargs!r:.80} do not build a network: {type(exc).__name__}"
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
    _check_finite_weights(path, model)
    return model.eval(), meta  # safe: nn.Module.eval(), inference mode


def _check_finite_weights(path: Path, model: nn.Module) -> None:
    """Refuse NaN anywhere and Inf in parameters: such a network computes NaN, and every later
    stage (export parity, INT8 calibration, bench accuracy) would fail or mislead far from here.
    A buffer may hold -inf on purpose (an attention mask), so only NaN is refused there."""
    bad = [
        name
        for name, tensor in model.named_parameters()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    bad += [
        name
        for name, tensor in model.named_buffers()
        if tensor.is_floating_point() and bool(torch.isnan(tensor).any())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise InputFileError(
            f"checkpoint {path} has NaN/Inf weights in {len(bad)} tensor(s) ({shown})",
            hint="the training diverged or the file is damaged: retrain, or use an earlier checkpoint",
        )


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
        try:
            from safetensors.torch import load_file  # lazy: only .safetensors weights need it
        except ImportError:
            from edgekd.errors import RuntimeUnavailable

            raise RuntimeUnavailable(
                f"{path} is a .safetensors file, which needs the safetensors package",
                hint="pip install safetensors (timm installs it)",
            ) from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types on foreign bytes
            raise InputFileError(
                f"weights {path} are not a readable safetensors file ({type(exc).__name__})",
                hint="re-download or re-save the file",
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputFileError(
            f"weights {path} are refused: the file is not plain weights ({_unpickling_reason(exc)})",
            hint="save a state_dict (torch.save(model.state_dict(), path)) or use .safetensors",
        ) from None
    except Exception as exc:  # torch.load raises many types on foreign bytes
        raise InputFileError(
            f"weights {path} are not a readable torch file ({type(exc).__name__})",
            hint="pass a .pth/.pt state_dict or a .safetensors file",
        ) from None


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
