"""The teacher stage: train the teacher, open and check the one the recipe names, or none.

``teacher.model: none`` (and no ``teacher.checkpoint``) is no teacher at all: the stage does
nothing, and the student is trained on its labels alone (``distill.kd.loss: ce``), the
baseline a distilled student is measured against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from edgekd.artifacts import commits_on_success, require_file
from edgekd.config import to_dict
from edgekd.data.artifact import open_data
from edgekd.data.batches import network_input_shape
from edgekd.data.unlabelled_source import split_hidden_labels
from edgekd.distill.distributed import barrier, is_main_process
from edgekd.distill.train import TrainConfig, train_supervised
from edgekd.errors import ConfigError
from edgekd.models.checkpoint import combine_checkpoints, save_checkpoint
from edgekd.models.complexity import count_params
from edgekd.models.factory import create_model
from edgekd.models.teacher import load_teacher
from edgekd.pipeline.checks import Log, _quiet

#: ``teacher.model`` for no teacher at all.
NO_TEACHER = "none"


@dataclasses.dataclass
class TeacherSection:
    """A teacher to train (``model``) or to load (``checkpoint``, which wins when set);
    ``model: none`` without a checkpoint: no teacher. ``seeds`` > 1 trains that many copies
    of ``model`` independently (seeds ``train.seed``, ``train.seed + 1``, ...) that teach as
    one ensemble, the mean of their logits: members trained apart make different mistakes."""

    model: str = "edgekd:resnet1d"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    seeds: int = 1
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.seeds < 1:
            raise ConfigError(
                f"teacher.seeds must be 1 or more, got {self.seeds}",
                hint="1 trains one teacher; N > 1 an ensemble of N seeds",
            )

    @property
    def absent(self) -> bool:
        """True for ``model: none`` without a checkpoint: the student trains alone."""
        return not self.checkpoint and self.model.strip().lower() == NO_TEACHER


@commits_on_success
def stage_teacher(
    section: TeacherSection,
    data_path: Path,
    out_dir: Path,
    resolve: Callable[[str], Path],
    log: Log = _quiet,
    *,
    resume: bool = False,
    progress: bool = False,
    hide_labels: float = 0.0,
) -> Path | None:
    """Train the teacher into ``out_dir/teacher.pt``, or check and return the given checkpoint;
    None for no teacher (:attr:`TeacherSection.absent`).

    Training state goes to ``out_dir/teacher-run/`` (metrics CSV/JSONL, best/last weights,
    the resume state); ``resume`` continues a killed run from it, with the same settings.
    Under torchrun every rank trains (DDP) and rank 0 alone writes. ``hide_labels`` (the
    recipe's ``data.hide_labels``): the teacher trains on the train frames whose labels are kept.
    """
    if section.absent:
        log("teacher: none (teacher.model: none): the student trains on its labels alone")
        return None
    dataset = open_data(data_path)
    if section.checkpoint:
        path = require_file(resolve(section.checkpoint), "teacher checkpoint")
        load_teacher(path, dataset)
        log(f"teacher: loaded {path}")
        return path
    train = split_hidden_labels(dataset.subset("train"), hide_labels)[0]
    kept = f" on the {len(train)} train frames data.hide_labels leaves labelled" if hide_labels else ""
    if section.seeds == 1:
        path = out_dir / "teacher.pt"
        _train_member(section, dataset, train, section.train.seed, path, out_dir / "teacher-run", data_path,
                      log, kept, resume=resume, progress=progress)  # fmt: skip
        return path
    members = []
    for i in range(section.seeds):
        seed = section.train.seed + i
        member = out_dir / f"teacher-seed{seed}.pt"
        _train_member(section, dataset, train, seed, member, out_dir / f"teacher-run-seed{seed}", data_path,
                      log, f"{kept} (ensemble member {i + 1} of {section.seeds}, seed {seed})",
                      resume=resume, progress=progress)  # fmt: skip
        members.append(member)
    path = out_dir / "teacher.pt"
    if is_main_process():
        combine_checkpoints(members, path)
    barrier()
    log(f"teacher: the ensemble of {section.seeds} seeds -> {path}")
    return path


def _train_member(
    section: TeacherSection,
    dataset: Any,
    train: Any,
    seed: int,
    path: Path,
    run_dir: Path,
    data_path: Path,
    log: Log,
    note: str,
    *,
    resume: bool,
    progress: bool,
) -> None:
    """Train one ``section.model`` with ``seed`` on ``train`` into the checkpoint ``path``."""
    # Seeded initial weights: the same on every rank and run, whatever drew random numbers before.
    torch.manual_seed(seed)
    model = create_model(
        section.model, dataset.num_classes, network_input_shape(dataset)[0], **section.kwargs
    )
    log(f"teacher: training {section.model} ({count_params(model):,} parameters){note}")
    cfg = dataclasses.replace(section.train, seed=seed)
    result = train_supervised(
        model, train, dataset.subset("val"), cfg, log=log, out_dir=run_dir, resume=resume, progress=progress
    )
    if is_main_process():
        save_trained(
            path,
            model,
            section.model,
            section.kwargs,
            dataset,
            metrics={"val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch},
            parents=[data_path],
            config=to_dict(section),
        )
    barrier()  # the other ranks distil from rank 0's checkpoint


def save_trained(
    path: Path, model: Any, model_name: str, model_kwargs: dict, dataset: Any, **record: Any
) -> None:
    """Checkpoint a model trained on ``dataset``: the shapes and classes come from the data."""
    save_checkpoint(
        path,
        model,
        model_name=model_name,
        model_kwargs=model_kwargs,
        num_classes=dataset.num_classes,
        in_channels=network_input_shape(dataset)[0],
        input_shape=network_input_shape(dataset),
        class_names=dataset.class_names,
        **record,
    )


__all__ = ["NO_TEACHER", "TeacherSection", "save_trained", "stage_teacher"]
