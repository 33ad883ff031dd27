"""Image folders (OCT-style layouts) with the usual ImageNet transforms, in numpy.

Two layouts are read:

* split folders: ``root/{train,val,test}/CLASS/*.png|jpg``. A missing ``val`` (Kermany
  OCT2017 ships ``train`` and ``test`` only) or ``test`` folder is carved out of ``train``:
  ``val_fraction`` / ``test_fraction`` of each class, seeded, as in the flat layout;
* flat: ``root/CLASS/*``, split deterministically, stratified by class, with
  :func:`edgekd.data.splits.assign_splits`.

Every image goes through :func:`load_image`: decoded with Pillow, converted to RGB
(grayscale OCT scans become three equal channels, so ImageNet-pretrained teachers take them),
the shorter side resized to ``resize`` (bilinear), centre-cropped to ``image_size``, scaled to
[0, 1] and normalised with the ImageNet mean/std: float32 [3, H, W].

Training views come from :func:`augment`, a pure function of (image, seed): a teacher-output
cache that stores the seed of each view can reproduce the exact view later.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import SPLITS, ArrayDataset
from edgekd.data.splits import assign_splits
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable
from edgekd.registry import suggestion

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _pil_image() -> Any:
    try:
        from PIL import Image  # lazy: only image datasets need Pillow
    except ImportError:
        raise RuntimeUnavailable(
            "reading images needs Pillow, which is not installed", hint="pip install pillow"
        ) from None
    return Image


@dataclasses.dataclass
class ImageTransform:
    """Evaluation transform: resize shorter side, centre crop, ImageNet normalisation.

    ``resize`` and ``image_size`` in pixels; ``resize`` must be >= ``image_size``.
    """

    image_size: int = 224
    resize: int = 256
    mean: list[float] = dataclasses.field(default_factory=lambda: IMAGENET_MEAN.tolist())
    std: list[float] = dataclasses.field(default_factory=lambda: IMAGENET_STD.tolist())

    def validate(self) -> None:
        if self.image_size <= 0 or self.resize < self.image_size:
            raise ConfigError(
                f"need 0 < image_size <= resize, got image_size {self.image_size}, resize {self.resize}",
                hint="e.g. image_size: 224, resize: 256",
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(
                "mean and std need 3 values each, std positive", hint="ImageNet's are the default"
            )


def load_image(path: str | os.PathLike[str], transform: ImageTransform) -> np.ndarray:
    """Decode, RGB, resize, centre-crop, normalise: float32 [3, image_size, image_size]."""
    image_mod = _pil_image()
    try:
        with image_mod.open(path) as img:
            img = img.convert("RGB")  # "L" (grayscale OCT) -> three equal channels
            w, h = img.size
            scale = transform.resize / min(w, h)
            size = (max(transform.resize, round(w * scale)), max(transform.resize, round(h * scale)))
            img = img.resize(size, image_mod.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0  # [H, W, 3]
    except (OSError, ValueError, image_mod.DecompressionBombError) as exc:
        raise InputFileError(
            f"image {path} cannot be read: {exc}", hint="remove or replace the file"
        ) from None
    crop = transform.image_size
    top, left = (arr.shape[0] - crop) // 2, (arr.shape[1] - crop) // 2
    arr = arr[top : top + crop, left : left + crop]
    arr = (arr - np.asarray(transform.mean, np.float32)) / np.asarray(transform.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def augment(image: np.ndarray, seed: int, *, max_shift: int = 8, flip: bool = True) -> np.ndarray:
    """A random training view of ``image`` float32 [C, H, W]; a pure function of its inputs.

    Horizontal flip with probability 1/2, then a translation by up to ``max_shift`` pixels in
    each direction (reflect-padded, cropped back to [C, H, W]) — the "pad and random crop" of
    image training recipes. The same (image, seed) always gives the same view.
    """
    rng = np.random.default_rng(int(seed))
    do_flip = bool(rng.integers(0, 2)) if flip else False
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2) if max_shift > 0 else (0, 0)
    out = image[:, :, ::-1] if do_flip else image
    if dy or dx:
        _, h, w = out.shape
        pad = max_shift
        padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        out = padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return np.ascontiguousarray(out, dtype=np.float32)


def view_seed(base_seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch``: a 63-bit int, stable across runs."""
    state = np.random.SeedSequence([int(base_seed), int(epoch), int(index)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _carve_missing_splits(
    split: np.ndarray,
    y: np.ndarray,
    present: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> np.ndarray:
    """Split codes int8 [N] where the ``train`` folder also supplies the splits without a folder.

    Training needs validation images (model selection, the INT8 accuracy check) and the
    bench needs test images, so a layout without them gets them from ``train``, stratified by
    class. A split that has its own folder is never added to.
    """
    if "train" not in present:
        return split
    val = val_fraction if "val" not in present else 0.0
    test = test_fraction if "test" not in present else 0.0
    if not val and not test:
        return split
    train = np.flatnonzero(split == SPLITS.index("train"))
    out = split.copy()
    out[train] = assign_splits(y[train], None, val, test, seed)
    return out


class ImageFolder:
    """Labelled image files under ``root`` (split-folder or flat layout, see the module doc).

    Attributes: ``files`` (sorted paths), ``y`` int64 [N], ``split`` int8 [N], ``class_names``.
    ``dataset[i]`` is ``(image float32 [3, S, S], label)``; images are decoded on access.

    Args:
        root: the dataset folder.
        class_names: label order; default the class folders sorted by name.
        transform: resize/crop/normalise settings.
        val_fraction, test_fraction, seed: the split of a flat layout, and of the ``train``
            folder into the splits that have no folder of their own.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        class_names: list[str] | None = None,
        transform: ImageTransform | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputFileError(f"image folder {self.root} does not exist", hint="check data.path")
        self.transform = transform or ImageTransform()
        self.transform.validate()
        split_dirs = [s for s in SPLITS if (self.root / s).is_dir()]
        tops = split_dirs or [""]
        found = sorted({d.name for top in tops for d in (self.root / top).iterdir() if d.is_dir()})
        if not found:
            raise InputFileError(
                f"image folder {self.root} has no class folders",
                hint="lay it out as ROOT/CLASS/*.png or ROOT/{train,val,test}/CLASS/*.png",
            )
        self.class_names = list(class_names) if class_names else found
        for name in self.class_names:
            if name not in found:
                raise ConfigError(
                    f"class {name!r} has no folder in {self.root}",
                    hint=suggestion(name, found, "class folders"),
                )
        files, labels, splits = [], [], []
        for top in tops:
            for label, name in enumerate(self.class_names):
                folder = self.root / top / name
                if not folder.is_dir():
                    continue
                for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                    files.append(path)
                    labels.append(label)
                    splits.append(SPLITS.index(top) if top else 0)
        if not files:
            raise InputFileError(f"image folder {self.root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.files = files
        self.y = np.asarray(labels, dtype=np.int64)
        if split_dirs:
            self.split = _carve_missing_splits(
                np.asarray(splits, dtype=np.int8), self.y, split_dirs, val_fraction, test_fraction, seed
            )
        else:
            self.split = assign_splits(self.y, None, val_fraction, test_fraction, seed)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.transform.image_size, self.transform.image_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return load_image(self.files[index], self.transform), int(self.y[index])

    def view(self, index: int, seed: int | None) -> np.ndarray:
        """Image ``index``, augmented with ``seed`` (None: the plain evaluation view)."""
        image = load_image(self.files[index], self.transform)
        return image if seed is None else augment(image, seed)

    def split_indices(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}", hint=f"use one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS.index(name))

    def to_array_dataset(self, max_per_class: int | None = None) -> ArrayDataset:
        """Decode images into memory: x float32 [N, 3, S, S] (first ``max_per_class`` per class and split).

        Meant for small sets and for the npz-based pipeline stages; large sets are read lazily.
        """
        keep = np.arange(len(self))
        if max_per_class is not None:
            if max_per_class <= 0:
                raise ConfigError(f"max_per_class must be positive, got {max_per_class}")
            cell = self.y * len(SPLITS) + self.split
            keep = np.concatenate([np.flatnonzero(cell == c)[:max_per_class] for c in np.unique(cell)])
            keep.sort()
        x = np.stack([load_image(self.files[i], self.transform) for i in keep]) if len(keep) else None
        if x is None:
            x = np.zeros((0, *self.input_shape), dtype=np.float32)
        return ArrayDataset(x=x, y=self.y[keep], class_names=self.class_names, split=self.split[keep])
