"""``edgekd.distill``: a teacher's knowledge into a student, from your objects or a recipe."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from edgekd.api import inputs
from edgekd.api.results import DistillResult
from edgekd.errors import ConfigError

Log = Callable[[str], None]
P = ParamSpec("P")
R = TypeVar("R")
_logger = logging.getLogger("edgekd")


def with_thread_policy(verb: Callable[P, R]) -> Callable[P, R]:
    """Apply edgekd's thread policy (:mod:`edgekd.runtime.threads`) when a verb is called: a
    library caller gets the same manners on a shared machine as the command line."""

    @functools.wraps(verb)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        from edgekd.runtime.threads import apply_thread_policy

        apply_thread_policy()
        return verb(*args, **kwargs)

    return call


def default_log(log: Log | None) -> Log:
    """The caller's ``log``, else the ``edgekd`` logger at INFO (a library prints nothing itself)."""
    return log if log is not None else _logger.info


@with_thread_policy
def distill(
    teacher: Any = None,
    student: Any = None,
    *,
    train: Any = None,
    val: Any = None,
    unlabelled: Any = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    loss: str | None = None,
    temperature: float | None = None,
    alpha: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str | None = None,
    seed: int | None = None,
    train_options: dict[str, Any] | None = None,
    kd_options: dict[str, Any] | None = None,
    teacher_epochs: int | None = None,
    student_kwargs: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    qat: bool = False,
    log: Log | None = None,
    progress: bool = False,
) -> DistillResult:
    """Distil ``teacher`` into ``student``.

    Args:
        teacher: an ``nn.Module`` (frozen, used as it is), an edgekd checkpoint or an ONNX file
            (run as a black box: logit losses only), or a registry name such as
            ``"edgekd:resnet1d"`` / ``"timm:convnextv2_tiny"``, trained here first on ``train``
            for ``teacher_epochs`` (default ``epochs``). None with ``loss="ce"``: the student
            trained alone on the labels, the baseline KD is measured against.
        student: an ``nn.Module`` (trained in place), a registry name (built for the data's
            frames and classes, with ``student_kwargs``) or an edgekd checkpoint to continue from.
        train, val: map-style datasets yielding ``(x, y)`` or ``(x, y, extras)``, or DataLoaders
            over them (the loader's batch size is used); or ``train`` a data file (``.npz``,
            ``data.json``) whose train and val splits are used.
        unlabelled: frames without labels the student learns from the teacher alone (KD terms on
            every frame, label terms on the labelled ones; ``kd_options={"unlabelled_share": 0.5}``
            sets their share of each batch): a dataset yielding ``x`` or ``(x, ...)`` (labels
            ignored), a DataLoader over one, or an npz file holding ``x``. With ``config=``, an npz
            file only (it becomes ``data.unlabelled``).
        config: a recipe (built-in name or YAML) instead: its data, teacher and student stages
            run as ``edgekd distill --config`` does; ``train`` may then be a data file and
            ``teacher`` a checkpoint that replace the recipe's. ``overrides``: ``KEY=VALUE``.
        loss, temperature, alpha: the objective's simple form (see ``distill.kd`` in recipes);
            ``kd_options`` takes any other ``distill.kd`` key (``terms``, ``cache_dir``, ...).
        epochs, batch_size, lr, device, seed: training settings; ``train_options`` any other
            ``distill.train`` key (``schedule``, ``ema``, ``augment``, ...).
        out: the run folder (``student.pt``, metrics, the teacher cache); None keeps
            everything in memory.
        resume: continue a killed run in ``out`` (same settings).
        qat: then quantization-aware distillation (recipe mode): ``student.qat.onnx``.
        log: where progress lines go (default: the ``edgekd`` logger at INFO).
        progress: a progress bar per epoch on stderr.

    Returns:
        a :class:`DistillResult`: the trained student module, its checkpoint and the figures.

    Raises:
        edgekd.EdgeKDError (ConfigError, InputFileError, ShapeError, ...): bad input, in one
            line; nothing is left half-written in ``out``.
    """
    return _distill(dict(locals()))


_EXPLICIT = ("loss", "temperature", "alpha", "epochs", "batch_size", "lr", "device", "seed")


def _distill(a: dict[str, Any]) -> DistillResult:
    """:func:`distill` on its arguments ``a`` (by name)."""
    from edgekd.artifacts import rollback_on_failure

    explicit = {key: a[key] for key in _EXPLICIT}
    with rollback_on_failure():
        if a["config"] is not None:
            return _from_recipe(
                a["config"], a["overrides"], explicit, a["teacher"], a["student"], a["train"], a["val"],
                a["out"], a["resume"], a["qat"], a["log"], a["progress"], a["unlabelled"],
            )  # fmt: skip
        if a["qat"]:
            raise ConfigError("qat=True needs a recipe (config=)", hint="call edgekd.qat(...) after distill")
        from edgekd.api.distill_objects import distill_objects

        return distill_objects(
            a["teacher"],
            a["student"],
            inputs.training_splits(a["train"], a["val"], a["class_names"]),
            explicit,
            unlabelled=inputs.unlabelled_data(a["unlabelled"]),
            train_options=a["train_options"] or {},
            kd_options=a["kd_options"] or {},
            teacher_epochs=a["teacher_epochs"],
            student_kwargs=a["student_kwargs"] or {},
            out=Path(a["out"]) if a["out"] is not None else None,
            resume=a["resume"],
            log=default_log(a["log"]),
            progress=a["progress"],
        )


def recipe_overrides(explicit: dict[str, Any]) -> list[str]:
    """``KEY=VALUE`` recipe overrides for the explicit arguments (JSON values are YAML)."""
    where = {"loss": "kd", "temperature": "kd", "alpha": "kd"}
    return [
        f"distill.{where.get(key, 'train')}.{key}={json.dumps(value)}"
        for key, value in explicit.items()
        if value is not None
    ]


def _from_recipe(
    config: str | Path,
    overrides: Sequence[str],
    explicit: dict[str, Any],
    teacher: Any,
    student: Any,
    train: Any,
    val: Any,
    out: str | Path | None,
    resume: bool,
    qat: bool,
    log: Log | None,
    progress: bool,
    unlabelled: Any = None,
) -> DistillResult:
    if val is not None or not (train is None or inputs.is_path(train)):
        raise ConfigError(
            "with config= (a recipe), train= may only be a data file and val= is not taken",
            hint="drop config= to distil on your own datasets",
        )
    if not (teacher is None or inputs.is_path(teacher)) or not (student is None or isinstance(student, str)):
        raise ConfigError(
            "with config= (a recipe), teacher= may only be a checkpoint and student= a model name",
            hint="drop config= to distil your own nn.Modules",
        )
    extra = list(recipe_overrides(explicit))
    if unlabelled is not None:
        if not inputs.is_path(unlabelled):
            raise ConfigError(
                "with config= (a recipe), unlabelled= may only be an npz file",
                hint="set data.unlabelled in the recipe, or drop config= to pass a dataset",
            )
        where = json.dumps(str(Path(unlabelled).resolve()))
        extra += ['data.unlabelled.source="npz"', f"data.unlabelled.path={where}"]
    if student is not None:
        extra.append(f"student.model={json.dumps(student)}")
    from edgekd.api.distill_recipe import distill_recipe

    return distill_recipe(
        str(config),
        (*overrides, *extra),
        data_path=Path(train) if train is not None else None,
        teacher_path=Path(teacher) if teacher is not None else None,
        out=Path(out) if out is not None else None,
        resume=resume,
        qat=qat,
        log=default_log(log),
        progress=progress,
    )


__all__ = ["default_log", "distill", "recipe_overrides", "with_thread_policy"]
