"""Image folders (OCT-style layouts) with the usual ImageNet transforms, in numpy.

Two layouts are read:

* split folders: ``root/{train,val,test}/CLASS/*.png|jpg``. A missing ``val`` (Kermany
  OCT2017 ships ``train`` and ``test`` only) or ``test`` folder is carved out of ``train``:
  ``val_fraction`` / ``test_fraction`` of each class, seeded, as in the flat layout;
* flat: ``root/CLASS/*``, split deterministically, stratified by class, with
  :func:`edgekd.data.splits.assign_splits`.

With a ``group`` setting (``patient``: OCT2017's ``CLASS-PATIENT-INDEX.jpeg`` names, or a
regex), the splits drawn here keep each group's images together
(:func:`edgekd.data.splits.assign_group_splits`): scans of one patient never reach both the
training and the validation or test images.

The folder is checked when it is opened: at least two class folders, every class folder holds
images and nothing else (hidden entries such as ``.DS_Store`` are skipped), no empty image
file. Each image is checked when it is decoded: an unreadable, truncated or oversized one
is an InputFileError naming it.

Every image goes through :func:`load_image`: decoded with Pillow, converted to RGB
(grayscale OCT scans become three equal channels, so ImageNet-pretrained teachers take them),
the shorter side resized to ``resize`` (bilinear), centre-cropped to ``image_size``, scaled to
[0, 1] and normalised with the ImageNet mean/std: float32 [3, H, W]. It is
:func:`decode_image` (uint8 pixels, one band for a grayscale image) then
:func:`normalize_image`, so a uint8 cache or a device-side normalisation gives the same values.

Training views come from :func:`augment`, a pure function of (image, seed): a teacher-output
cache that stores the seed of each view can reproduce the exact view later.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.dataset import SPLITS, ArrayDataset
from edgekd.data.splits import assign_group_splits, assign_splits
from edgekd.data.validate import check_class_count, check_memory
from edgekd.errors import ConfigError, InputFileError
from edgekd.optional import require_module
from edgekd.registry import suggestion

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MAX_SIDE = 8192  # pixels, for resize and image_size: larger asks for gigabytes per image
# What Pillow raises for a damaged file: OSError (truncated, unidentified), SyntaxError (some
# plugins' "broken PNG"), struct.error / IndexError / EOFError from header parsers.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, struct.error)
# ``group: patient``: OCT2017 names its scans CLASS-PATIENT-INDEX (``CNV-1016042-1.jpeg``).
PATIENT_PATTERN = r"^[^-]+-(.+)-[^-.]+\.[^.]+$"
GROUP_HINT = "group is none, patient (names CLASS-PATIENT-INDEX.ext) or a regex whose first group is the key"
FOLDER_HINT = "lay it out as ROOT/CLASS/*.png or ROOT/{train,val,test}/CLASS/*.png, two or more classes"


def _pil_image() -> Any:
    return require_module("PIL.Image", "reading images", "Pillow")  # only image datasets need Pillow


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
        if self.image_size <= 0 or self.resize < self.image_size or self.resize > MAX_SIDE:
            raise ConfigError(
                f"need 0 < image_size <= resize <= {MAX_SIDE}, got image_size {self.image_size}, "
                f"resize {self.resize}",
                hint="e.g. image_size: 224, resize: 256",
            )
        values = [*self.mean, *self.std]
        if len(self.mean) != 3 or len(self.std) != 3 or not all(math.isfinite(v) for v in values):
            raise ConfigError("mean and std need 3 finite values each", hint="ImageNet's are the default")
        if min(self.std) <= 0:
            raise ConfigError(f"std must be positive, got {self.std}", hint="ImageNet's are the default")


def decode_image(
    path: str | os.PathLike[str], transform: ImageTransform, *, draft: bool = False
) -> np.ndarray:
    """Decode, resize the shorter side to ``transform.resize`` (bilinear), centre-crop: uint8 [C, S, S].

    ``C`` is 1 for a grayscale ("L") image and 3 otherwise (converted to RGB);
    :func:`normalize_image` makes either the float32 [3, S, S] :func:`load_image` returns.
    Resizing the single band of a grayscale image gives exactly the pixels of resizing its
    RGB conversion (Pillow filters each band alike), at a third of the cost.

    ``draft`` lets Pillow decode a JPEG at 1/2, 1/4 or 1/8 scale in the DCT domain, never below
    the resized size (other formats ignore it). It is a no-op unless the shorter side is at
    least twice ``resize`` (an OCT scan's 496 rows at ``resize`` 256 or more); when it acts,
    pixels differ slightly from a full decode.

    Raises InputFileError naming ``path`` when it cannot be decoded (not an image, truncated,
    corrupt) or declares more than Pillow's ``MAX_IMAGE_PIXELS`` (a decompression bomb).
    """
    image_mod = _pil_image()
    try:
        with image_mod.open(path) as img:
            w, h = img.size  # from the header: checked before any pixel is decoded
            if w <= 0 or h <= 0 or w * h > (image_mod.MAX_IMAGE_PIXELS or math.inf):
                raise InputFileError(
                    f"image {path} declares {w} x {h} pixels", hint="remove or replace the file"
                )
            scale = transform.resize / min(w, h)
            size = (max(transform.resize, round(w * scale)), max(transform.resize, round(h * scale)))
            if draft:
                img.draft(img.mode, size)
            if img.mode != "L":
                img = img.convert("RGB")  # palette, 16-bit, CMYK... as the RGB a viewer shows
            img = img.resize(size, image_mod.Resampling.BILINEAR)
            arr = np.asarray(img)  # uint8 [H, W] or [H, W, 3]
    except (*_DECODE_ERRORS, image_mod.DecompressionBombError) as exc:
        raise InputFileError(
            f"image {path} cannot be read: {exc}", hint="remove or replace the file"
        ) from None
    crop = transform.image_size
    top, left = (arr.shape[0] - crop) // 2, (arr.shape[1] - crop) // 2
    arr = arr[top : top + crop, left : left + crop]
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def normalize_image(pixels: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """uint8 [C, H, W] (C = 1: grayscale, or 3) -> float32 [3, H, W]: scaled to [0, 1], then
    ``(value - mean) / std`` per channel; one grayscale band becomes three channels."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(transform.mean, np.float32)
    std = np.asarray(transform.std, np.float32)
    out = np.empty((3, *pixels.shape[1:]), dtype=np.float32)
    for c in range(3):  # channel by channel: a broadcast of one band to three is ~5x slower
        band = x[c] if len(x) == 3 else x[0]
        np.subtract(band, mean[c], out=out[c])
        np.divide(out[c], std[c], out=out[c])
    return out


def load_image(path: str | os.PathLike[str], transform: ImageTransform, *, draft: bool = False) -> np.ndarray:
    """Decode, RGB, resize, centre-crop, normalise: float32 [3, image_size, image_size].

    :func:`decode_image` then :func:`normalize_image`; ``draft`` as in :func:`decode_image`.
    Raises InputFileError naming ``path`` when it cannot be decoded.
    """
    return normalize_image(decode_image(path, transform, draft=draft), transform)


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


def group_pattern(group: str | None) -> re.Pattern[str] | None:
    """The regex an image folder's ``group`` setting names (None for "none"); ConfigError if bad."""
    if group in (None, "", "none"):
        return None
    try:
        return re.compile(PATIENT_PATTERN if group == "patient" else group)
    except re.error as exc:
        raise ConfigError(
            f"data.imagefolder.group {group!r} is not a valid regex: {exc}", hint=GROUP_HINT
        ) from None


def file_groups(files: list[Path], pattern: re.Pattern[str]) -> np.ndarray:
    """The group key of each image (str [N]): ``pattern``'s first group searched in the file
    name, or its whole match when it has no group. A name it does not match is refused."""
    keys = []
    for path in files:
        found = pattern.search(path.name)
        if found is None:
            raise InputFileError(
                f"image {path}: its name does not match the group pattern {pattern.pattern!r}",
                hint=f"rename it, or change data.imagefolder.group ({GROUP_HINT})",
            )
        keys.append(found.group(1) if pattern.groups else found.group(0))
    return np.asarray(keys, dtype=np.str_)


def _draw(
    y: np.ndarray, groups: np.ndarray | None, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Split codes stratified by class, by group when the folder has a group setting."""
    if groups is None:
        return assign_splits(y, None, val_fraction, test_fraction, seed)
    return assign_group_splits(groups, y, None, val_fraction, test_fraction, seed)


def _carve_missing_splits(
    split: np.ndarray,
    y: np.ndarray,
    present: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
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
    out[train] = _draw(y[train], None if groups is None else groups[train], val, test, seed)
    return out


def _visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` not hidden (``.DS_Store``, ``.ipynb_checkpoints``...), sorted."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_images(folder: Path) -> list[Path]:
    """The image files of one class folder; anything else in it, or no image at all, is refused."""
    images = []
    for path in _visible(folder):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            kind = "a folder" if path.is_dir() else f"not an image file ({', '.join(IMAGE_SUFFIXES)})"
            raise InputFileError(
                f"{path} in class folder {folder} is {kind}",
                hint="move it out of the class folder; each class folder holds only its images",
            )
        if path.stat().st_size == 0:
            raise InputFileError(f"image {path} is empty (0 bytes)", hint="remove or replace the file")
        images.append(path)
    if not images:
        raise InputFileError(f"class folder {folder} holds no images", hint="add images or remove the folder")
    return images


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
        group: "none", "patient" or a regex (:func:`file_groups`): images sharing a key never
            straddle the splits drawn here (fractions count groups); given folders stay as they are.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        class_names: list[str] | None = None,
        transform: ImageTransform | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        group: str | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputFileError(f"image folder {self.root} does not exist", hint="check data.path")
        self.transform = transform or ImageTransform()
        self.transform.validate()
        split_dirs = [s for s in SPLITS if (self.root / s).is_dir()]
        tops = split_dirs or [""]
        found = sorted({d.name for top in tops for d in _visible(self.root / top) if d.is_dir()})
        if not found:
            raise InputFileError(f"image folder {self.root} has no class folders", hint=FOLDER_HINT)
        self.class_names = list(class_names) if class_names else found
        for name in self.class_names:
            if name not in found:
                raise ConfigError(
                    f"class {name!r} has no folder in {self.root}",
                    hint=suggestion(name, found, "class folders"),
                )
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError("classes lists a class twice", hint="name each class once")
        check_class_count(
            len(self.class_names),
            f"image folder {self.root} ({', '.join(self.class_names)})",
            hint=FOLDER_HINT if not class_names else "name two or more classes",
        )
        files, labels, splits = [], [], []
        for top in tops:
            for label, name in enumerate(self.class_names):
                folder = self.root / top / name
                if not folder.is_dir():
                    continue
                images = _class_images(folder)
                files.extend(images)
                labels.extend([label] * len(images))
                splits.extend([SPLITS.index(top) if top else 0] * len(images))
        self.files = files
        self.y = np.asarray(labels, dtype=np.int64)
        pattern = group_pattern(group)
        groups = None if pattern is None else file_groups(files, pattern)
        if split_dirs:
            self.split = _carve_missing_splits(
                np.asarray(splits, dtype=np.int8),
                self.y,
                split_dirs,
                val_fraction,
                test_fraction,
                seed,
                groups,
            )
        else:
            self.split = _draw(self.y, groups, val_fraction, test_fraction, seed)

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

    def keep_indices(self, max_per_class: int | None = None) -> np.ndarray:
        """Indices int64 (ascending) of the first ``max_per_class`` images of each class and split
        (None: all): the images that :meth:`to_array_dataset` and the lazy datasets read."""
        keep = np.arange(len(self))
        if max_per_class is not None:
            if max_per_class <= 0:
                raise ConfigError(f"max_per_class must be positive, got {max_per_class}")
            cell = self.y * len(SPLITS) + self.split
            keep = np.concatenate([np.flatnonzero(cell == c)[:max_per_class] for c in np.unique(cell)])
            keep.sort()
        return keep.astype(np.int64)

    def to_array_dataset(self, max_per_class: int | None = None) -> ArrayDataset:
        """Decode images into memory: x float32 [N, 3, S, S] (first ``max_per_class`` per class and split).

        Meant for small sets and for the npz-based pipeline stages; large sets are read lazily.
        """
        keep = self.keep_indices(max_per_class)
        check_memory(
            len(keep) * 4 * math.prod(self.input_shape),
            f"the {len(keep)} images of image folder {self.root}",
            "set data.imagefolder.max_per_class, or a smaller image_size",
            error=ConfigError,
        )
        x = np.stack([load_image(self.files[i], self.transform) for i in keep]) if len(keep) else None
        if x is None:
            x = np.zeros((0, *self.input_shape), dtype=np.float32)
        return ArrayDataset(x=x, y=self.y[keep], class_names=self.class_names, split=self.split[keep])
