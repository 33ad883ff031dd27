"""What the Python API accepts, turned into what edgekd's stages take.

Data: a map-style ``torch.utils.data.Dataset`` (``(x, y)`` or ``(x, y, extras)``), a
``DataLoader`` over one, or a data file (an ``.npz`` or the data stage's ``data.json``).
Models: an ``nn.Module``, an edgekd checkpoint (``.pt``), an ONNX teacher (``.onnx``), or a
registry name (``edgekd:cnn1d_small``, ``timm:efficientnet_b0``, ``module:pkg.mod:factory``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError

PathLike = str | os.PathLike


def is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


@dataclasses.dataclass
class Splits:
    """Training data as edgekd datasets: ``train`` and ``val`` (map-style), the file they came
    from (None for the user's own datasets), and what a DataLoader asked for (batch_size,
    num_workers) as training settings."""

    train: Any
    val: Any
    path: Path | None = None
    loader: dict[str, int] = dataclasses.field(default_factory=dict)


def open_file(path: PathLike, what: str = "dataset") -> Any:
    """A data file opened (only its labels: frames are read on access)."""
    from edgekd.artifacts import require_file
    from edgekd.data.artifact import open_data

    return open_data(require_file(Path(path), what))


def training_splits(train: Any, val: Any, class_names: Any = None) -> Splits:
    """``train``/``val`` as edgekd datasets. A data file gives both splits (``val`` unset);
    the user's datasets are wrapped (:class:`edgekd.data.torch_dataset.TorchDataset`)."""
    if is_path(train):
        if val is not None:
            raise ConfigError(
                "val= is taken from the data file's val split",
                hint="pass train= a file alone, or two datasets",
            )
        dataset = open_file(train)
        return Splits(dataset.subset("train"), dataset.subset("val"), path=Path(train))
    if train is None or val is None:
        raise ConfigError(
            "distill needs train= and val= (datasets), or train= a data file (.npz, data.json)",
            hint="pass val=, e.g. a held-out part of your training set",
        )
    from edgekd.data.torch_dataset import as_torch_datasets, unwrap_loader

    loader = unwrap_loader(train, "train")[1]
    wrapped = as_torch_datasets({"train": train, "val": val}, class_names)
    return Splits(wrapped["train"], wrapped["val"], loader=loader)


def unlabelled_data(data: Any) -> Any:
    """Frames without labels for distillation: None; an npz file holding ``x`` (its labels, if
    any, ignored); an edgekd dataset as it is; or the user's dataset or DataLoader, wrapped
    (:class:`edgekd.data.torch_dataset.UnlabelledTorchDataset`)."""
    if data is None:
        return None
    if is_path(data):
        from edgekd.artifacts import require_file
        from edgekd.data.unlabelled_source import open_unlabelled_file

        return open_unlabelled_file(require_file(Path(data), "unlabelled frames"))
    from edgekd.data.dataset import ArrayDataset
    from edgekd.data.mapstyle import MapDataset

    if isinstance(data, (ArrayDataset, MapDataset)):
        return data
    from edgekd.data.torch_dataset import UnlabelledTorchDataset, unwrap_loader

    return UnlabelledTorchDataset(unwrap_loader(data, "unlabelled")[0], name="unlabelled")


def evaluation_data(data: Any, name: str, class_names: Any = None) -> tuple[Any, Path | None]:
    """A dataset to evaluate or calibrate on: an opened data file (with its splits) and its path,
    or the user's dataset wrapped (every sample counts) and None."""
    if data is None:
        raise ConfigError(f"{name}= is required", hint="pass a dataset, a DataLoader or a data file")
    if is_path(data):
        return open_file(data), Path(data)
    from edgekd.data.torch_dataset import as_torch_datasets

    return as_torch_datasets({name: data}, class_names)[name], None


def as_train_split(dataset: Any) -> Any:
    """``dataset`` (without split labels) as a view whose every sample is in the train split,
    the split calibration recipes draw from."""
    import copy

    import numpy as np

    view = copy.copy(dataset)
    view.split = np.zeros(len(dataset), dtype=np.int8)
    return view


def load_model_file(path: PathLike, what: str) -> tuple[Any, Any]:
    """``(model, meta)`` of an edgekd checkpoint, or ``(OnnxTeacher, None)`` of an ONNX file."""
    from edgekd.artifacts import require_file
    from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path

    path = require_file(Path(path), what)
    if is_onnx_path(path):
        return OnnxTeacher(path), None
    from edgekd.models.checkpoint import load_checkpoint

    return load_checkpoint(path)


def looks_like_file(name: str) -> bool:
    """A model reference that names a file rather than a registry name."""
    return name.lower().endswith((".pt", ".pth", ".onnx")) or os.sep in name or Path(name).exists()


def build_named(name: str, data: Any, kwargs: dict[str, Any] | None) -> Any:
    """A fresh network from a registry name, shaped for ``data``'s frames and classes."""
    from edgekd.data.batches import network_input_shape
    from edgekd.models.factory import create_model

    return create_model(name, data.num_classes, network_input_shape(data)[0], **(kwargs or {}))


__all__ = [
    "Splits",
    "as_train_split",
    "build_named",
    "evaluation_data",
    "is_path",
    "load_model_file",
    "looks_like_file",
    "open_file",
    "training_splits",
]
