"""Where a recipe's data comes from: one typed spec, one registry of loaders.

A recipe's ``data:`` section is a :class:`DataSpec`. ``source`` picks the loader;
``path`` names the file or folder (not used by ``synthetic_modulation``); the section named
after a built-in source holds its options (the others are ignored). Examples::

    data: {source: synthetic_modulation, synthetic: {frames_per_class_snr: 100}}
    data: {source: npz, path: frames.npz}
    data: {source: npz, path: train.npz, test_path: test.npz}
    data: {source: rml2016, path: RML2016.10a_dict.pkl, rml2016: {snrs: [0, 2, 4]}}
    data: {source: rml2018, path: GOLD_XYZ_OSC.0001_1024.hdf5,
           rml2018: {classes: [BPSK, QPSK], max_frames_per_cell: 200}}
    data: {source: imagefolder, path: OCT2017, imagefolder: {image_size: 224, group: patient}}

A source registered from the user's own module (``@DATA_SOURCES.register("my_source")``)
declares its options as keyword-only parameters with defaults, read from its signature as a
loss's ``params`` are; the recipe gives them under ``options`` (a misspelt one is refused with
"did you mean")::

    @DATA_SOURCES.register("my_source")
    def my_source(spec: DataSpec, path: Path, *, frames: int = 100, seed: int = 0) -> ArrayDataset: ...

    data: {source: my_source, options: {frames: 500}}

:func:`load_dataset` returns an in-memory :class:`ArrayDataset` with splits, which the
npz-based pipeline stages consume. For a set too large for memory,
:func:`edgekd.data.storage.open_map_dataset` opens the same section as a lazy map-style
dataset (and keeps small sets in memory).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgekd.data.dataset import ArrayDataset, join_test_file
from edgekd.data.modulation import SyntheticModulationConfig
from edgekd.data.rml2016 import BURST_FRAMES
from edgekd.data.rml2018 import RML2018Selection, materialize_rml2018
from edgekd.data.splits import check_fractions
from edgekd.data.validate import check_input_shape, check_splits, validate_dataset
from edgekd.errors import ConfigError, InputFileError
from edgekd.registry import Registry, suggestion

if TYPE_CHECKING:
    from edgekd.data.images import ImageFolder

# The sources edgekd ships; others are registered by users' modules (see the module doc).
BUILT_IN_SOURCES = ("synthetic_modulation", "npz", "rml2016", "rml2018", "imagefolder")
# Sources with a lazy form (edgekd.data.storage); every other one is read into memory whole.
LAZY_SOURCES = ("imagefolder", "rml2018", "npz")
Resolve = Callable[[str], Path]


@dataclasses.dataclass
class SplitOptions:
    """Split fractions and seed, stratified by (class, SNR) where SNR labels exist."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def validate(self) -> None:
        check_fractions(self.val_fraction, self.test_fraction)
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")


@dataclasses.dataclass
class RML2016Options(SplitOptions):
    """``classes``: names in label order (default all in the file, in the order the file's keys
    name them first); ``snrs`` in dB (default all); ``burst_frames``: each (class, SNR) entry is
    split by contiguous bursts of at most that many frames, never parted between splits
    (:func:`edgekd.data.rml2016.load_rml2016`)."""

    classes: list[str] = dataclasses.field(default_factory=list)
    snrs: list[int] = dataclasses.field(default_factory=list)
    burst_frames: int = BURST_FRAMES

    def validate(self) -> None:
        super().validate()
        if self.burst_frames < 1:
            raise ConfigError(
                f"burst_frames must be 1 or more, got {self.burst_frames}",
                hint="frames per burst of one capture, e.g. 100; 1 splits frame by frame",
            )


@dataclasses.dataclass
class RML2018Options(SplitOptions):
    """Subset of a RadioML 2018 file to read into memory.

    ``classes`` in label order (default all 24); ``snrs`` in dB (default all);
    ``max_frames_per_cell`` caps each (class, SNR) cell (random, by ``seed``; the full file
    has 4096 per cell); ``class_names`` renames the one-hot columns (default the RML2018 names).
    """

    classes: list[str] = dataclasses.field(default_factory=list)
    snrs: list[int] = dataclasses.field(default_factory=list)
    max_frames_per_cell: int | None = None
    class_names: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        super().validate()
        if self.max_frames_per_cell is not None and self.max_frames_per_cell <= 0:
            raise ConfigError(f"max_frames_per_cell must be positive, got {self.max_frames_per_cell}")

    def selection(self) -> RML2018Selection:
        """The frame selection, as the in-memory and the lazy RadioML 2018 readers take it."""
        return RML2018Selection(
            classes=self.classes or None,
            snrs=self.snrs or None,
            max_frames_per_cell=self.max_frames_per_cell,
            class_names=self.class_names or None,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
        )


@dataclasses.dataclass
class ImageFolderOptions(SplitOptions):
    """Image folder settings; the split options apply to a flat ``ROOT/CLASS/*`` layout only.

    ``image_size`` is the square crop side in pixels after resizing the shorter side to
    ``resize``; ``max_per_class`` caps the images per class and split that are decoded.
    ``group`` keeps images of one group in one split when splits are drawn: ``none``,
    ``patient`` (OCT2017 names, ``CNV-1016042-1.jpeg``: class-patient-index) or a regex whose
    first group, searched in the file name, is the key (:func:`edgekd.data.images.file_groups`).
    """

    classes: list[str] = dataclasses.field(default_factory=list)
    image_size: int = 224
    resize: int = 256
    max_per_class: int | None = None
    group: str = "none"

    def validate(self) -> None:
        super().validate()
        if self.image_size <= 0 or self.resize < self.image_size:
            raise ConfigError(
                f"need 0 < image_size <= resize, got {self.image_size} and {self.resize}",
                hint="e.g. image_size: 224, resize: 256",
            )
        if self.max_per_class is not None and self.max_per_class <= 0:
            raise ConfigError(f"max_per_class must be positive, got {self.max_per_class}")
        from edgekd.data.images import group_pattern  # no Pillow: it only compiles the regex

        group_pattern(self.group)

    def open_folder(self, path: Path) -> ImageFolder:
        """The image folder these settings describe: files listed, none decoded yet."""
        from edgekd.data.images import ImageFolder, ImageTransform  # Pillow only when images are read

        return ImageFolder(
            path,
            class_names=self.classes or None,
            transform=ImageTransform(image_size=self.image_size, resize=self.resize),
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            group=self.group,
        )


@dataclasses.dataclass
class DataSpec:
    """Which data a recipe uses. A superset of the recipe's former ``DataSection``:
    ``source``, ``path`` and ``synthetic`` keep their meaning.

    ``input_shape`` is the shape of one frame the recipe expects, without the batch axis
    (e.g. ``[2, 128]``, or ``[3, 224, 224]`` for images); empty accepts what the source holds.
    Data of another shape is refused when it is loaded, before ``data.npz`` is written.

    ``test_path`` names a second file (or folder) of the same source, options and frame shape
    whose frames are the whole test split; the ``path`` data is then split into train and val
    only (:func:`load_dataset`; the two are joined in memory).
    """

    source: str = "synthetic_modulation"
    path: str | None = None
    test_path: str | None = None
    # Options of a source registered by the user: its loader's keyword-only parameters.
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    input_shape: list[int] = dataclasses.field(default_factory=list)
    # "auto": images as a prepared uint8 pixel cache read lazily, other sources in memory
    # when they fit (edgekd.data.storage.choose_storage); "memory" or "lazy" to override.
    storage: Literal["auto", "memory", "lazy"] = "auto"
    synthetic: SyntheticModulationConfig = dataclasses.field(default_factory=SyntheticModulationConfig)
    rml2016: RML2016Options = dataclasses.field(default_factory=RML2016Options)
    rml2018: RML2018Options = dataclasses.field(default_factory=RML2018Options)
    imagefolder: ImageFolderOptions = dataclasses.field(default_factory=ImageFolderOptions)
    # Frames without labels for distillation (edgekd.distill.unlabelled): a second source of
    # the same frame shape, whose labels (if it has any) are ignored and whose every split is used.
    unlabelled: DataSpec | None = None
    # The share of the train split whose labels are hidden (0 <= share < 1): those frames join
    # the unlabelled frames, and the teacher and the student's CE term see only the rest.
    hide_labels: float = 0.0

    def validate(self) -> None:
        check_source_options(self.source, self.options)
        check_unlabelled_options(self)
        if self.source in _WHAT and not self.path:
            raise ConfigError(
                f"data.source is {self.source!r} but data.path is empty",
                hint=f"set data.path to the {_WHAT[self.source]}",
            )
        if self.test_path:
            check_test_path(self)
        if self.storage == "lazy" and self.source not in LAZY_SOURCES:
            raise ConfigError(
                f"data.storage is 'lazy' but data source {self.source!r} is read into memory whole",
                hint="use data.storage: auto or memory",
            )
        if self.input_shape and (
            len(self.input_shape) not in (2, 3) or any(int(d) <= 0 for d in self.input_shape)
        ):
            raise ConfigError(
                f"data.input_shape {self.input_shape} is not the shape of one frame",
                hint="e.g. [2, 128] for IQ frames or [3, 224, 224] for images; [] accepts any",
            )


def check_unlabelled_options(spec: DataSpec) -> None:
    """ConfigError for a bad ``data.unlabelled`` / ``data.hide_labels``."""
    if not 0.0 <= spec.hide_labels < 1.0:
        raise ConfigError(
            f"data.hide_labels must be >= 0 and < 1, got {spec.hide_labels}",
            hint="the share of the train split used as unlabelled frames, e.g. 0.8; 0 keeps every label",
        )
    pool = spec.unlabelled
    if pool is None:
        return
    if pool.unlabelled is not None or pool.hide_labels:
        raise ConfigError(
            "data.unlabelled has an unlabelled section of its own",
            hint="give data.unlabelled a source and its options only",
        )
    pool.validate()


def check_test_path(spec: DataSpec) -> None:
    """ConfigError where ``data.test_path`` cannot apply: generated data, or lazy storage."""
    if spec.source == "synthetic_modulation":
        raise ConfigError(
            "data.test_path is set but synthetic data has no file",
            hint="remove data.test_path; data.synthetic draws every split",
        )
    if spec.storage == "lazy":
        raise ConfigError(
            "data.test_path joins two files in memory, but data.storage is 'lazy'",
            hint="use data.storage: auto or memory, or remove data.test_path",
        )


_WHAT = {
    "npz": ".npz file",
    "rml2016": "RadioML 2016 .pkl file",
    "rml2018": "RadioML 2018 .hdf5 file",
    "imagefolder": "image folder",
}

_LABEL = {
    "npz": "dataset",
    "rml2016": "RadioML 2016 file",
    "rml2018": "RadioML 2018 file",
    "imagefolder": "image folder",
}
# What to change when a split comes out empty or without a class, per source.
_SPLIT_HINTS = {
    "synthetic_modulation": "raise data.synthetic.frames_per_class_snr, or set val_fraction and "
    "test_fraction so that every split gets frames",
    "npz": "give the file's split array frames of every class in train (0) and some in val (1) and test (2), "
    "or give it a group array [N] and no split to have one drawn by group",
    "rml2016": "keep more classes/SNRs, or set data.rml2016.val_fraction and test_fraction above 0",
    "rml2018": "raise data.rml2018.max_frames_per_cell (3 or more), or set val_fraction and test_fraction "
    "above 0",
    "imagefolder": "add images (3 or more per class), raise data.imagefolder.max_per_class, or set "
    "val_fraction and test_fraction above 0",
}


def describe_source(spec: DataSpec, path: Path) -> str:
    """How messages name the data: the file or folder, or the recipe section that generates it."""
    if spec.source == "synthetic_modulation":
        return "synthetic data (data.synthetic)"
    if spec.source in _LABEL:
        return f"{_LABEL[spec.source]} {path}"
    return f"data source {spec.source!r}" + (f" ({path})" if spec.path else "")


def split_hint(source: str) -> str:
    """What to change when a split of ``source``'s data comes out empty or without a class."""
    return _SPLIT_HINTS.get(
        source, f"make data source {source!r} give frames of every class in train and some in val and test"
    )


Loader = Callable[[DataSpec, Path], ArrayDataset]
DATA_SOURCES: Registry[Loader] = Registry("data source")


@DATA_SOURCES.register("synthetic_modulation")
def _synthetic(spec: DataSpec, path: Path) -> ArrayDataset:
    from edgekd.data.modulation import generate_modulation_dataset

    return generate_modulation_dataset(spec.synthetic)


@DATA_SOURCES.register("npz")
def _npz(spec: DataSpec, path: Path) -> ArrayDataset:
    from edgekd.data.dataset import load_npz

    return load_npz(path)


@DATA_SOURCES.register("rml2016")
def _rml2016(spec: DataSpec, path: Path) -> ArrayDataset:
    from edgekd.data.rml2016 import load_rml2016

    opts = spec.rml2016
    return load_rml2016(
        path,
        classes=opts.classes or None,
        snrs=opts.snrs or None,
        val_fraction=opts.val_fraction,
        test_fraction=opts.test_fraction,
        seed=opts.seed,
        burst_frames=opts.burst_frames,
    )


@DATA_SOURCES.register("rml2018")
def _rml2018(spec: DataSpec, path: Path) -> ArrayDataset:
    return materialize_rml2018(path, spec.rml2018.selection())


@DATA_SOURCES.register("imagefolder")
def _imagefolder(spec: DataSpec, path: Path) -> ArrayDataset:
    opts = spec.imagefolder
    return opts.open_folder(path).to_array_dataset(max_per_class=opts.max_per_class)


def load_dataset(spec: DataSpec, resolve: Resolve = Path) -> ArrayDataset:
    """Build the dataset ``spec`` names, in memory, with split labels, and check it.

    The result passes :func:`edgekd.data.validate.validate_arrays` (finite frames, labels that
    fit >= 2 class names...) and :func:`edgekd.data.validate.check_splits` (every split holds
    frames, the train split every class), and has ``spec.input_shape`` when that is set: what
    fails is refused here, before a caller writes it anywhere. With ``spec.test_path`` the
    test split is that file's frames, joined by :func:`edgekd.data.dataset.join_test_file`.

    Args:
        spec: the data section (validated again here).
        resolve: maps ``spec.path`` (and ``spec.test_path``) to a file (a recipe passes
            ``recipe.path`` so paths are relative to the recipe file).

    Raises:
        ConfigError: bad options; InputFileError: a missing or malformed file;
        ShapeError: a test file whose frames have another shape;
        RuntimeUnavailable: h5py or Pillow missing for a source that needs it.
    """
    spec.validate()
    loader = DATA_SOURCES.get(spec.source)
    path = _existing_path(spec, spec.path, resolve, "data.path")
    where = describe_source(spec, path)
    if spec.test_path:
        test_path = _existing_path(spec, spec.test_path, resolve, "data.test_path")
        if test_path.resolve() == path.resolve():
            raise ConfigError(
                f"data.test_path {test_path} is data.path itself",
                hint="give a separate file for the test split, or remove data.test_path",
            )
        main = validate_dataset(_load_train_val(spec, loader, path), where)
        test_where = describe_source(spec, test_path)
        test = validate_dataset(loader(spec, test_path, **spec.options), test_where)
        dataset = join_test_file(main, test, where, test_where)
    else:
        dataset = validate_dataset(loader(spec, path, **spec.options), where)
    check_input_shape(dataset, spec.input_shape, where)
    check_splits(dataset, where, split_hint(spec.source))
    return dataset


def _existing_path(spec: DataSpec, value: str | None, resolve: Resolve, key: str) -> Path:
    path = resolve(value) if value else Path()
    if spec.source in _WHAT and not path.exists():
        raise InputFileError(f"{key} {path} does not exist", hint=f"set {key} to the {_WHAT[spec.source]}")
    return path


def _load_train_val(spec: DataSpec, loader: Loader, path: Path) -> ArrayDataset:
    """The ``path`` data of a spec with a test file: its splits drawn with no test share."""
    if spec.source == "npz":
        from edgekd.data.dataset import load_npz

        # Its split array as it is; else drawn by its group array, else per (class, SNR).
        return load_npz(path, test_fraction=0.0, draw_missing=True)
    if spec.source in ("rml2016", "rml2018", "imagefolder"):  # the section named after the source
        options = dataclasses.replace(getattr(spec, spec.source), test_fraction=0.0)
        spec = dataclasses.replace(spec, **{spec.source: options})
    return loader(spec, path, **spec.options)


def source_options(source: str) -> dict[str, Any]:
    """The options data source ``source`` takes: its loader's keyword-only parameters, each with
    its default (``inspect.Parameter.empty`` when the recipe must give it).

    Raises:
        ConfigError: an unknown source, with "did you mean".
    """
    loader = DATA_SOURCES.get(source)
    params = inspect.signature(loader).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_source_options(source: str, options: dict[str, Any]) -> None:
    """ConfigError unless ``options`` (a recipe's ``data.options``) fit source ``source``: every
    key an option it declares ("did you mean" otherwise), every option without a default given."""
    known = source_options(source)
    for key in options:
        if key in known:
            continue
        if known:
            hint = suggestion(key, sorted(known), f"options of data source {source!r}")
        elif source in BUILT_IN_SOURCES:
            section = "synthetic" if source == "synthetic_modulation" else source
            hint = f"{source!r} takes no data.options; its settings are under data.{section}"
        else:
            hint = f"data source {source!r} declares no options; remove data.options"
        raise ConfigError(f"data source {source!r} has no option {key!r}", hint=hint)
    missing = [
        name for name, default in known.items() if default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise ConfigError(
            f"data source {source!r} needs option {missing[0]!r}",
            hint=f"set data.options.{missing[0]}",
        )
