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
from edgekd.models.checkpoint import save_checkpoint
from edgekd.models.complexity import count_params
from edgekd.models.factory import create_model
from edgekd.models.teacher import load_teacher
from edgekd.pipeline.checks import Log, _quiet

#: ``teacher.model`` for no teacher at all.
NO_TEACHER = "none"


@dataclasses.dataclass
class TeacherSection:
    """A teacher to train (``model``) or to load (``checkpoint``, which wins when set);
    ``model: none`` without a checkpoint: no teacher."""

    model: str = "edgekd:resnet1d"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

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
    # Seeded initial weights: the same on every rank and run, whatever drew random numbers before.
    torch.manual_seed(section.train.seed)
    model = create_model(
        section.model, dataset.num_classes, network_input_shape(dataset)[0], **section.kwargs
    )
    train = split_hidden_labels(dataset.subset("train"), hide_labels)[0]
    kept = f" on the {len(train)} train frames data.hide_labels leaves labelled" if hide_labels else ""
    log(f"teacher: training {section.model} ({count_params(model):,} parameters){kept}")
    result = train_supervised(
        model,
        train,
        dataset.subset("val"),
        section.train,
        log=log,
        out_dir=out_dir / "teacher-run",
        resume=resume,
        progress=progress,
    )
    path = out_dir / "teacher.pt"
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
    barrier()  # the other ranks distil from rank 0's teacher.pt
    return path


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
