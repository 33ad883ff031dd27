"""Any map-style ``torch.utils.data.Dataset`` (or ``DataLoader``) behind edgekd's dataset contract.

The Python API (:mod:`edgekd.api`) takes the user's own data: a dataset whose ``ds[i]`` is
``(x, y)`` or ``(x, y, extras)``, with ``x`` a tensor or array of one sample (channels first,
already transformed the way the network takes it) and ``y`` the class id. ``extras`` is a
dict; its ``"snr"`` (dB), when given, enables the per-SNR accuracy tables and the SNR-stratified
calibration recipe.

:class:`TorchDataset` wraps such a dataset as a :class:`~edgekd.data.mapstyle.MapDataset`: the
training loop, the teacher cache, calibration and accuracy read it like any lazy source, one
sample at a time, in DataLoader workers when asked. Labels are read once when it is opened:
from the dataset's ``targets``/``labels`` attribute when it has one (torchvision's
``ImageFolder`` and ``DatasetFolder`` do), else by reading every sample once.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from edgekd.data.mapstyle import MapDataset
from edgekd.errors import ConfigError, InputFileError, ShapeError

_LABEL_ATTRIBUTES = ("targets", "labels", "y")
_CLASS_ATTRIBUTES = ("classes", "class_names")


def _as_array(x: Any, where: str) -> np.ndarray:
    """One sample as float32 (a tensor or array; anything else is refused naming the sample)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    if isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False)
    raise InputFileError(
        f"{where}: x is a {type(x).__name__}, not a tensor or array",
        hint="end the dataset's transform with a tensor conversion (e.g. torchvision ToTensor())",
    )


def _as_label(y: Any, where: str) -> int:
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point():
        return int(y.item())
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        return int(y)
    if isinstance(y, np.ndarray) and y.size == 1 and np.issubdtype(y.dtype, np.integer):
        return int(y.item())
    raise InputFileError(
        f"{where}: the label is {type(y).__name__} {str(y)[:40]!r}, not a class id",
        hint="yield (x, y) with y an int class id in 0..K-1",
    )


def _unpack(sample: Any, where: str) -> tuple[Any, Any, dict]:
    """(x, y, extras) of one sample, refused in one line when it is not such a tuple."""
    if isinstance(sample, (tuple, list)) and len(sample) in (2, 3):
        extras = sample[2] if len(sample) == 3 else {}
        if not isinstance(extras, dict):
            raise InputFileError(
                f"{where}: the third element is a {type(extras).__name__}, not a dict of extras",
                hint="yield (x, y) or (x, y, {'snr': dB})",
            )
        return sample[0], sample[1], extras
    raise InputFileError(
        f"{where} is a {type(sample).__name__}, not (x, y) or (x, y, extras)",
        hint="make dataset[i] return a tuple (x, y)",
    )


def _label_attribute(dataset: Any, n: int) -> np.ndarray | None:
    for name in _LABEL_ATTRIBUTES:
        labels = getattr(dataset, name, None)
        if labels is None or isinstance(labels, (str, bytes)):
            continue
        try:
            arr = np.asarray(labels)
        except (TypeError, ValueError):
            continue
        if arr.shape == (n,) and np.issubdtype(arr.dtype, np.integer):
            return arr.astype(np.int64)
    return None


def _scan(dataset: Any, n: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Every sample's label (and SNR when the extras carry one), read once."""
    labels = np.empty(n, dtype=np.int64)
    snr = np.empty(n, dtype=np.int16)
    has_snr = True
    for i in range(n):
        where = f"{name}[{i}]"
        _x, y, extras = _unpack(dataset[i], where)
        labels[i] = _as_label(y, where)
        if "snr" in extras and has_snr:
            snr[i] = round(float(extras["snr"]))
        else:
            has_snr = False
    return labels, (snr if has_snr and n else None)


class TorchDataset(MapDataset):
    """A user's map-style dataset (see the module doc) as an edgekd :class:`MapDataset`.

    Args:
        dataset: ``len()`` and ``dataset[i] -> (x, y)`` or ``(x, y, extras)``.
        name: how messages name it ("train", "val").
        class_names: the class names (default: the dataset's ``classes``, else "0".."K-1" for
            ``num_classes`` or the largest label + 1).
        num_classes: the class count when ``class_names`` is not known.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        name: str = "dataset",
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        n = len(dataset)
        if n == 0:
            raise InputFileError(f"{name} holds no samples", hint="pass a dataset with samples")
        first_x, first_y, first_extras = _unpack(dataset[0], f"{name}[0]")
        labels = _label_attribute(dataset, n)
        snr = None
        if labels is None or "snr" in first_extras:
            labels, snr = _scan(dataset, n, name)
        _as_label(first_y, f"{name}[0]")
        names = list(class_names or self._names_of(dataset) or [])
        k = len(names) or max(int(num_classes or 0), int(labels.max()) + 1, 2)
        names = names or [str(i) for i in range(k)]
        if labels.min() < 0 or labels.max() >= len(names):
            raise InputFileError(
                f"{name} has labels in {int(labels.min())}..{int(labels.max())} but {len(names)} classes",
                hint="labels must be class ids 0..K-1; pass class_names for every class",
            )
        super().__init__(
            rows=np.arange(n),
            y=labels,
            class_names=names,
            input_shape=_as_array(first_x, f"{name}[0]").shape,
            snr=snr,
            source=name,
        )
        self.dataset = dataset

    @staticmethod
    def _names_of(dataset: Any) -> list[str] | None:
        for attr in _CLASS_ATTRIBUTES:
            names = getattr(dataset, attr, None)
            if isinstance(names, (list, tuple)) and len(names) >= 2:
                return [str(c) for c in names]
        return None

    @staticmethod
    def _frame(sample: Any, where: str) -> Any:
        """The frame ``x`` of one of the user's samples."""
        return _unpack(sample, where)[0]

    def _read(self, rows: np.ndarray) -> list[np.ndarray]:
        out = []
        for row in rows.tolist():
            where = f"{self.source}[{row}]"
            x = _as_array(self._frame(self.dataset[row], where), where)
            if x.shape != self.input_shape:
                raise ShapeError(
                    f"{where} has shape {list(x.shape)} but {self.source}[0] has {list(self.input_shape)}",
                    hint="give every sample the same shape (resize or crop in the transform)",
                )
            out.append(np.array(x, dtype=np.float32, copy=True))
        return out


class UnlabelledTorchDataset(TorchDataset):
    """A user's dataset of frames without labels (``ds[i]`` is ``x``, ``(x,)``, or ``(x, y...)``
    whose ``y`` is ignored) as a :class:`MapDataset` with placeholder labels, for
    distillation on unlabelled frames (:mod:`edgekd.distill.unlabelled`)."""

    def __init__(self, dataset: Any, *, name: str = "unlabelled") -> None:
        n = len(dataset)
        if n == 0:
            raise InputFileError(f"{name} holds no samples", hint="pass a dataset with samples")
        first = _as_array(self._frame(dataset[0], f"{name}[0]"), f"{name}[0]")
        MapDataset.__init__(  # TorchDataset's reads the labels this dataset does not have
            self,
            rows=np.arange(n),
            y=np.zeros(n, dtype=np.int64),
            class_names=["unlabelled", "-"],  # placeholders: the labelled set's classes are used
            input_shape=first.shape,
            source=name,
        )
        self.dataset = dataset

    @staticmethod
    def _frame(sample: Any, where: str) -> Any:
        """``x`` alone, or the first element of a tuple (any label after it is ignored)."""
        if isinstance(sample, (tuple, list)) and 1 <= len(sample) <= 3:
            return sample[0]
        return sample


def unwrap_loader(data: Any, name: str) -> tuple[Any, dict[str, int]]:
    """``(dataset, settings)`` of a DataLoader, its ``batch_size`` and ``num_workers`` as
    training settings (``(data, {})`` otherwise); an iterable-style dataset is refused: edgekd
    reads samples by index (teacher cache, calibration, exact resume), and shuffles itself."""
    settings: dict[str, int] = {}
    if isinstance(data, DataLoader):
        if data.batch_size is not None:
            settings["batch_size"] = data.batch_size
        if data.num_workers:
            settings["num_workers"] = data.num_workers
        data = data.dataset
    if isinstance(data, IterableDataset):
        raise ConfigError(
            f"{name} is an IterableDataset; edgekd needs a map-style dataset (len() and ds[i])",
            hint="wrap the samples in a map-style torch.utils.data.Dataset",
        )
    if not isinstance(data, Dataset) and not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ConfigError(
            f"{name} is a {type(data).__name__}, not a dataset",
            hint="pass a torch Dataset, a DataLoader, or a data file (.npz, data.json)",
        )
    return data, settings


def as_torch_datasets(
    named: dict[str, Any], class_names: Sequence[str] | None = None
) -> dict[str, TorchDataset]:
    """Each of ``named`` (``{"train": ds, "val": ds}``) as a :class:`TorchDataset`, with one
    class list for all (the first dataset's names, else enough for the largest label of any)."""
    wrapped = {name: TorchDataset(unwrap_loader(ds, name)[0], name=name) for name, ds in named.items()}
    names = list(class_names) if class_names else None
    if names is None:
        named_lists = [w.class_names for w in wrapped.values() if TorchDataset._names_of(w.dataset)]
        names = named_lists[0] if named_lists else None
    if names is None:
        k = max(int(w.y.max()) + 1 for w in wrapped.values())
        names = [str(i) for i in range(max(k, 2))]
    for name, w in wrapped.items():
        if int(w.y.max()) >= len(names):
            raise InputFileError(
                f"{name} has label {int(w.y.max())} but the classes are {len(names)}",
                hint="pass class_names naming every class",
            )
        w.class_names = list(names)
    return wrapped


__all__ = ["TorchDataset", "UnlabelledTorchDataset", "as_torch_datasets", "unwrap_loader"]
