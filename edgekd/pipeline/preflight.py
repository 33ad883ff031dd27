"""Checks run before any stage writes: every file a later stage reads, opened and validated first.

``edgekd run`` trains for minutes before it exports, quantizes, benches and gates, and a
finished stage's outputs are kept (:func:`edgekd.artifacts.commits_on_success`). So a bad
calibration recipe, target profile or teacher checkpoint must be refused here, in a second,
not after training, when ``data.npz`` and the training state already exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgekd import resources
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import EdgeKDError, ShapeError
from edgekd.models.fit import ModelInput
from edgekd.models.teacher import read_teacher_input
from edgekd.pipeline.checks import DataCheck, target_check
from edgekd.pipeline.recipe import Recipe

# What a model factory raises for arguments it cannot use (a negative width, a huge size).
_BUILD_ERRORS = (TypeError, ValueError, RuntimeError, MemoryError, OverflowError)


def recipe_label(recipe: Recipe) -> str:
    """How messages name the recipe: its file, else its name."""
    return f"recipe {recipe.source_file}" if recipe.source_file else f"recipe {recipe.name!r}"


def _in_recipe(exc: EdgeKDError, recipe: Recipe, key: str) -> EdgeKDError:
    """``exc`` (same class, same exit code) with the recipe file and the key it is about in front."""
    exc.message = f"{recipe_label(recipe)}: {key}: {exc.message}"
    exc.args = (exc.message,)
    return exc


def preflight_models(recipe: Recipe) -> None:
    """Build the student (and the teacher to train) once, empty, so a wrong model name or
    argument fails in a second, before any data is generated or trained on. The error names
    the recipe file and the key (``student.model``, ``teacher.kwargs``...)."""
    from edgekd.errors import ConfigError
    from edgekd.models.factory import create_model

    classes = len(recipe.data.synthetic.classes) if recipe.data.source == "synthetic_modulation" else 2
    channels = 3 if recipe.data.source == "imagefolder" else 2
    roles = [("student", recipe.student.model, recipe.student.kwargs)]
    if not recipe.teacher.checkpoint and not recipe.teacher.absent:
        roles.insert(0, ("teacher", recipe.teacher.model, recipe.teacher.kwargs))
    for role, name, kwargs in roles:
        key = f"{role}.model {name!r}" + (f" with {role}.kwargs {kwargs}" if kwargs else "")
        try:
            create_model(name, classes, channels, **kwargs)
        except EdgeKDError as exc:
            raise _in_recipe(exc, recipe, key) from None
        except _BUILD_ERRORS as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ConfigError(
                f"{recipe_label(recipe)}: {key} does not build: {type(exc).__name__}: {detail}",
                hint=f"check {role}.kwargs",
            ) from None


@dataclasses.dataclass
class Preflight:
    """What the checks found: the teacher checkpoint's inputs (None: the teacher is trained),
    the gate's target profile (None: no gate), and the checks the data stage runs on the
    frames before writing them (each names the data file and the file it compares with)."""

    teacher: ModelInput | None = None
    target: Any = None
    data_checks: list[DataCheck] = dataclasses.field(default_factory=list)


def preflight_training(recipe: Recipe, *, qat: bool = False) -> Preflight:
    """Before ``distill`` (then quantization-aware distillation with ``qat``): the models build,
    a recipe without a teacher asks for labels alone (and no QAT, which distils from it), the
    teacher checkpoint (if given) opens and says which frames and classes it takes, so the
    data is checked against it before ``data.npz``."""
    preflight_models(recipe)
    _check_objective(recipe, qat)
    found = Preflight()
    if recipe.teacher.checkpoint:
        found.teacher = teacher = read_teacher_input(recipe.path(recipe.teacher.checkpoint))
        shape = [int(d) for d in recipe.data.input_shape]
        if shape and not teacher.takes(shape):
            raise ShapeError(
                f"{teacher.label} takes frames of shape {teacher.shown_shape} but "
                f"{recipe_label(recipe)} sets data.input_shape {shape}",
                hint="use a teacher trained on frames of that shape, or change data.input_shape",
            )
        found.data_checks.append(teacher.check)
    return found


def _check_objective(recipe: Recipe, qat: bool) -> None:
    """Without a teacher (``teacher.model: none``) the objective must be of labels alone."""
    from edgekd.errors import ConfigError

    if recipe.teacher.absent and qat:
        raise ConfigError(
            f"{recipe_label(recipe)}: quantization-aware training distils from the teacher, "
            "but teacher.model is none",
            hint="name a teacher, or run without --qat",
        )
    kd = recipe.distill.kd
    if recipe.teacher.absent and kd.needs_teacher:
        raise ConfigError(
            f"{recipe_label(recipe)}: teacher.model is none (no teacher), "
            f"but distill.kd ({kd.describe()}) needs one",
            hint="set distill.kd.loss=ce to train the student alone on its labels, or name a teacher",
        )


def _calibration(name: str) -> DataCheck:
    """The calibration recipe ``name``, resolved and parsed now, and a check that it can select
    frames from the data (e.g. ``stratified_snr`` needs SNR labels), naming the recipe file."""
    from edgekd.data.calibration import load_calibration_recipe, select_calibration

    path = resources.resolve("calibration", name)
    recipe = load_calibration_recipe(path)

    def check(dataset: ArrayDataset, data: str) -> None:
        try:
            select_calibration(dataset, recipe)
        except EdgeKDError as exc:
            if str(path) not in exc.message:
                exc.message = f"calibration recipe {path}: {exc.message}"
                exc.args = (exc.message,)
            raise

    return check


def _target(name: str) -> tuple[Any, DataCheck]:
    """The target profile ``name``, loaded, and a check of its input_shape against the frames."""
    from edgekd.targets import load_target

    path = resources.resolve("targets", name)
    target = load_target(path)
    return target, target_check(target, path)


def preflight_run(recipe: Recipe) -> Preflight:
    """Before ``edgekd run``: :func:`preflight_training`, then every file the later stages read:
    the quantization calibration recipe (and TensorRT's), the gate's target profile and the
    deploy section's target and calibration recipe. What depends on the frames (calibration
    recipes select from them, the gate's and deploy's targets fit them) is checked by the data
    stage before it writes: deploy and quantize would refuse them only after training."""
    found = preflight_training(recipe)
    if recipe.search.enabled and recipe.teacher.absent:
        from edgekd.errors import ConfigError

        raise ConfigError(
            f"{recipe_label(recipe)}: search.enabled distils each candidate from the teacher, "
            "but teacher.model is none",
            hint="name a teacher, or turn the search off (search.enabled=false)",
        )
    found.data_checks.append(_calibration(recipe.quantize.calibration))
    tensorrt = recipe.export.tensorrt
    if tensorrt is not None and tensorrt.precision == "int8":
        found.data_checks.append(_calibration(tensorrt.calibration))
    if recipe.gate.enabled and recipe.gate.target:
        # The gate refuses a bench of frames that do not fit its target's input_shape: say so
        # now, not after training.
        found.target, fits = _target(recipe.gate.target)
        found.data_checks.append(fits)
    deploy = recipe.deploy
    if deploy.enabled:
        name = deploy.target or recipe.gate.target
        if name:  # without one, the deploy stage says so; deploy holds the frames to its input_shape
            found.data_checks.append(_target(name)[1])
        if deploy.calibration:
            found.data_checks.append(_calibration(deploy.calibration))
    return found


__all__ = ["Preflight", "preflight_models", "preflight_run", "preflight_training", "recipe_label"]
