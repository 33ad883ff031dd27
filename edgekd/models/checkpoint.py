"""Checkpoints: the weights plus everything needed to rebuild the network.

A checkpoint is a ``torch.save`` of a dict holding only plain types and tensors::

    {"format": "edgekd.checkpoint/1", "model_name": "resnet1d", "model_kwargs": {...},
     "num_classes": 8, "in_channels": 2, "input_shape": [2, 128], "class_names": [...],
     "metrics": {...}, "state_dict": {name: tensor}}

so it loads with ``torch.load(weights_only=True)``: a file whose pickle would import or
call anything else is refused, never executed. The manifest ``<file>.json`` sits beside it.

:func:`edgekd.models.weights.load_pretrained_weights` starts a freshly built network from a
plain weights file under the same rule. :func:`combine_checkpoints` writes an ensemble
checkpoint from member checkpoints (``edgekd ensemble``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.artifacts import atomic_path, require_file, write_manifest
from edgekd.errors import ConfigError, EdgeKDError, InputFileError
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.ensemble import TeacherEnsemble
from edgekd.models.factory import create_model
from edgekd.models.trust import UntrustedFileError, reading_file
from edgekd.models.weights import load_plain_torch

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
    # (A stored ``pretrained`` flag stays: a rebuild from a file ignores it, never downloads.)
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


def _read_payload(path: Path) -> dict[str, Any]:
    payload = load_plain_torch(
        path,
        "checkpoint",
        refused_hint="load only checkpoints written by edgekd, or re-export the weights from trusted code",
        unreadable_hint="pass a .pt file written by edgekd distill or save_checkpoint",
    )
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
    with reading_file(path, "checkpoint"):
        _check_network_size(path, meta, payload["state_dict"])
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


#: How far a network's weights may exceed the file's before the build is refused unattempted.
SIZE_SLACK = 64 << 20


def _check_network_size(path: Path, meta: CheckpointMeta, state: dict[str, Any]) -> None:
    """Refuse, before any memory is taken, a network larger than the weights the file holds.

    The network is first built on torch's "meta" device (shapes, no storage). Its weights
    must equal the file's for the strict load that follows, so a network that needs far more
    bytes than the file holds (:data:`SIZE_SLACK` beyond them) can only be a forged or foreign
    ``model_kwargs`` (a width of 2**40 asked the allocator for 56 TiB): refused here rather
    than attempted. A smaller mismatch is left to the strict load, which names the tensors. A
    model that cannot be built on "meta" (code that reads tensor values while building) is
    built as before.
    """
    try:
        with torch.device("meta"):
            probe = create_model(meta.model_name, meta.num_classes, meta.in_channels, **meta.model_kwargs)
    except (RuntimeError, OverflowError) as exc:
        if "overflow" not in str(exc).lower():
            return  # not a size problem: the real build reports what is wrong
        raise _bad_field(
            path, "model_kwargs", f"{meta.model_kwargs!r:.80} do not build a network: its size overflows"
        ) from None
    except Exception:  # the real build below reports any real problem in one line
        return
    need = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    held = sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    if need > held + SIZE_SLACK:
        raise _bad_field(
            path,
            "model_kwargs",
            f"{meta.model_kwargs!r:.80} do not build a network that fits: {need / 2**20:,.1f} MiB of "
            f"weights, the file holds {held / 2**20:,.1f} MiB",
        )


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


def combine_checkpoints(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Write ``out``: one ``ensemble`` checkpoint holding the networks of ``paths``.

    The members must share classes (names and order) and input shape; their weights are held
    unchanged, so the ensemble's logits are exactly the mean of the members'.

    Raises:
        ConfigError: fewer than two paths, or ``out`` among them.
        InputFileError: a member that is not an edgekd checkpoint, or that disagrees with the
            first on classes or input shape.
    """
    out = Path(out)
    sources = [Path(p) for p in paths]
    if len(sources) < 2:
        raise ConfigError(
            f"an ensemble needs at least two checkpoints, got {len(sources)}",
            hint="pass every member: edgekd ensemble a.pt b.pt --out teacher.pt",
        )
    if any(p.resolve() == out.resolve() for p in sources):
        raise ConfigError(f"--out {out} is one of the members", hint="write the ensemble to a new file")
    loaded = [load_checkpoint(p) for p in sources]
    first = loaded[0][1]
    for path, (_model, meta) in zip(sources[1:], loaded[1:], strict=True):
        for field in ("class_names", "input_shape", "in_channels"):
            if getattr(meta, field) != getattr(first, field):
                raise InputFileError(
                    f"ensemble member {path} has {field} {getattr(meta, field)}, "
                    f"{sources[0]} has {getattr(first, field)}",
                    hint="combine teachers trained on the same data",
                )
    # The loaded networks become the members as they are; the specs let a load rebuild them.
    ensemble = TeacherEnsemble(first.num_classes, first.in_channels, [model for model, _meta in loaded])
    specs = [{"model": meta.model_name, "kwargs": meta.model_kwargs} for _model, meta in loaded]
    save_checkpoint(
        out,
        ensemble.eval(),  # safe: nn.Module.eval(), inference mode
        model_name="ensemble",
        model_kwargs={"members": specs},
        num_classes=first.num_classes,
        in_channels=first.in_channels,
        input_shape=first.input_shape,
        class_names=first.class_names,
        metrics={"members": len(specs)},
        parents=list(sources),
    )
    return out
