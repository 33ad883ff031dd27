"""Pipeline stages. Each reads the artifacts of the stage before and writes its own.

Every stage is usable alone (the CLI verbs call these functions) and writes each
artifact atomically with a manifest beside it, so any stage can be re-run from
the files of the one before. This module holds the training stages (data, teacher,
distillation); export and quantization live in :mod:`edgekd.pipeline.convert`, bench and
gate in :mod:`edgekd.pipeline.measure`, the checks run before any stage in
:mod:`edgekd.pipeline.preflight`. Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.artifacts import commits_on_success, require_file
from edgekd.config import to_dict
from edgekd.data.artifact import open_data
from edgekd.data.batches import network_input_shape
from edgekd.data.dataset import ArrayDataset
from edgekd.errors import InputFileError
from edgekd.pipeline.checks import (
    DataCheck,
    Log,
    _quiet,
    checkpoint_input,
    data_label,
    onnx_teacher_input,
    run_checks,
)
from edgekd.pipeline.convert import PARITY_SAMPLES, QUANT_EVAL_SAMPLES, stage_export, stage_quantize
from edgekd.pipeline.measure import (
    bench_candidates,
    entry_for_artifact,
    stage_bench,
    stage_gate,
    teacher_record,
)
from edgekd.pipeline.preflight import preflight_models
from edgekd.pipeline.recipe import DataSection, DistillSection, StudentSection, TeacherSection

__all__ = [
    "PARITY_SAMPLES",
    "QUANT_EVAL_SAMPLES",
    "Log",
    "bench_candidates",
    "entry_for_artifact",
    "load_teacher",
    "preflight_models",
    "stage_bench",
    "stage_data",
    "stage_distill",
    "stage_export",
    "stage_gate",
    "stage_quantize",
    "stage_teacher",
    "teacher_record",
]


@commits_on_success
def stage_data(
    section: DataSection,
    out_dir: Path,
    resolve: Callable[[str], Path],
    log: Log = _quiet,
    *,
    checks: Sequence[DataCheck] = (),
    workers: int | str = "auto",
) -> Path:
    """Prepare the data every later stage reads; returns the data artifact (``open_data`` opens it).

    * data held in memory (``data.storage``, :func:`stores_lazily`): the frames go to
      ``out_dir/data.npz`` (an npz source is used in place, memory-mapped when it is large);
    * lazy data: ``out_dir/data.json``, a data index naming the source; an image folder is
      first decoded once, by ``workers`` DataLoader workers, into the uint8 pixel cache
      ``out_dir/data-images.npy`` (reused while the images and settings are unchanged).

    ``checks`` run on the data before anything is written (e.g. that it fits the teacher
    checkpoint: :meth:`edgekd.pipeline.checks.ModelInput.check`); each names the source.
    Under torchrun only rank 0 writes; the other ranks wait, then read its files.
    """
    from edgekd.data.artifact import check_training_set
    from edgekd.data.sources import describe_source
    from edgekd.distill.distributed import barrier, is_main_process

    source = resolve(section.path) if section.path else Path()
    if section.source == "npz":
        path = require_file(source, "dataset", hint="set data.path to an existing .npz")
        dataset = check_training_set(open_data(path, storage=section.storage), section, path)
        run_checks(checks, dataset, describe_source(section, path))
        log(f"data: {len(dataset)} frames of {list(dataset.input_shape)} from {path}")
        if section.storage == "auto":
            return path  # used in place: later stages apply the same rule by size
        # An index keeps the override for every later stage (and --data) that opens the data.
        index = out_dir / "data.json"
        if is_main_process():
            from edgekd.data.artifact import write_index

            write_index(index, section, path, dataset, None)
        barrier()
        return index
    lazy, opened = stores_lazily(section, source)  # the same answer on every rank
    path = out_dir / "data.json" if lazy else out_dir / "data.npz"
    if not is_main_process():
        barrier()  # rank 0 writes the data artifact
        return path
    if lazy:
        _write_lazy_data(section, source, path, log, checks=checks, workers=workers, opened=opened)
    else:
        _write_data_npz(section, source, path, resolve, log, checks=checks)
    barrier()
    return path


def stores_lazily(section: DataSection, source: Path) -> tuple[bool, Any]:
    """Whether the data stage reads ``section``'s data lazily (``data.storage``; "auto": an image
    folder always, as a uint8 pixel cache a twelfth of float32's size; RadioML 2018 when its
    frames would take more than a quarter of RAM; the other sources never), and the lazy
    dataset when deciding opened it (else None), so that it is not read twice."""
    from edgekd.data.artifact import LAZY_SOURCES, open_lazy_source
    from edgekd.data.storage import choose_storage

    if section.storage != "auto":
        return section.storage == "lazy", None
    if section.source == "imagefolder":
        return True, None
    if section.source not in LAZY_SOURCES or not source.exists():
        return False, None  # a missing path: the in-memory loader names it
    dataset = open_lazy_source(section, source)
    return choose_storage(dataset.nbytes) == "lazy", dataset


def _write_data_npz(section, source: Path, path: Path, resolve, log: Log, *, checks) -> None:
    from edgekd.data.sources import describe_source, load_dataset

    dataset = load_dataset(section, resolve)
    run_checks(checks, dataset, describe_source(section, source))
    # A file source is a parent artifact; a folder of images is not hashed as one.
    parents = [source] if section.source in ("rml2016", "rml2018") and section.path else None
    dataset.save_npz(path, config=to_dict(section), parents=parents)
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} frames of {list(dataset.input_shape)} ({section.source}), "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )


def _write_lazy_data(section, source: Path, path: Path, log: Log, *, checks, workers, opened=None) -> None:
    from edgekd.data.artifact import IMAGE_CACHE_NAME, open_lazy_source, prepare_images, write_index
    from edgekd.data.batches import resolve_workers
    from edgekd.data.sources import describe_source

    if not source.exists():
        raise InputFileError(f"data.path {source} does not exist", hint="check data.path")
    dataset = opened if opened is not None else open_lazy_source(section, source)
    run_checks(checks, dataset, describe_source(section, source))
    cache = None
    if section.source == "imagefolder":
        count = resolve_workers(workers, dataset)
        log(f"data: decoding {len(dataset)} images of {source} into {IMAGE_CACHE_NAME} ({count} workers)")
        dataset = prepare_images(dataset, path.parent, count, say=log)
        cache = IMAGE_CACHE_NAME
    write_index(path, section, source, dataset, cache)
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} frames of {list(dataset.input_shape)} ({section.source}, read lazily), "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )


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
) -> Path:
    """Train the teacher into ``out_dir/teacher.pt``, or check and return the given checkpoint.

    Training state goes to ``out_dir/teacher-run/`` (metrics CSV/JSONL, best/last weights,
    the resume state); ``resume`` continues a killed run from it, with the same settings.
    Under torchrun every rank trains (DDP) and rank 0 alone writes.
    """
    from edgekd.distill.distributed import barrier, is_main_process
    from edgekd.models.factory import create_model

    dataset = open_data(data_path)
    if section.checkpoint:
        path = require_file(resolve(section.checkpoint), "teacher checkpoint")
        load_teacher(path, dataset)
        log(f"teacher: loaded {path}")
        return path
    import torch

    from edgekd.distill.train import train_supervised
    from edgekd.models.complexity import count_params

    # Seeded initial weights: the same on every rank and run, whatever drew random numbers before.
    torch.manual_seed(section.train.seed)
    model = create_model(
        section.model, dataset.num_classes, network_input_shape(dataset)[0], **section.kwargs
    )
    log(f"teacher: training {section.model} ({count_params(model):,} parameters)")
    result = train_supervised(
        model,
        dataset.subset("train"),
        dataset.subset("val"),
        section.train,
        log=log,
        out_dir=out_dir / "teacher-run",
        resume=resume,
        progress=progress,
    )
    path = out_dir / "teacher.pt"
    if is_main_process():
        _save_trained(
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


def _save_trained(
    path: Path, model: Any, model_name: str, model_kwargs: dict, dataset: ArrayDataset, **record: Any
) -> None:
    """Checkpoint a model trained on ``dataset``: the shapes and classes come from the data."""
    from edgekd.models.checkpoint import save_checkpoint

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


def load_teacher(path: Path, dataset: ArrayDataset) -> tuple[Any, str]:
    """A teacher from a checkpoint (.pt) or an ONNX file run as a black box, checked against the
    data (frame shape, class count and names; a mismatch names both files)."""
    from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path

    if is_onnx_path(path):
        teacher = OnnxTeacher(path)
        fits, name = onnx_teacher_input(path, teacher), path.name
    else:
        from edgekd.models.checkpoint import load_checkpoint

        teacher, meta = load_checkpoint(path)
        fits, name = checkpoint_input(path, meta, "teacher"), meta.model_name
    fits.check(dataset, data_label(dataset))
    return teacher, name


@commits_on_success
def stage_distill(
    student: StudentSection,
    section: DistillSection,
    data_path: Path,
    teacher_path: Path,
    out_dir: Path,
    log: Log = _quiet,
    *,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """Distil the teacher into the student: ``out_dir/student.pt`` (run files in ``distill-run/``).

    Teacher logits are cached in ``distill.kd.cache_dir`` (default ``out_dir/teacher_cache``).
    Under torchrun every rank trains (DDP) and rank 0 alone writes.
    """
    import torch

    from edgekd.distill.distributed import barrier, is_main_process
    from edgekd.distill.train import distill, evaluate_model
    from edgekd.models.complexity import count_params
    from edgekd.models.factory import create_model

    dataset = open_data(data_path)
    teacher, teacher_name = load_teacher(teacher_path, dataset)
    torch.manual_seed(section.train.seed)  # seeded initial weights, as for the teacher
    model = create_model(
        student.model, dataset.num_classes, network_input_shape(dataset)[0], **student.kwargs
    )
    t_params = getattr(teacher, "num_parameters", None) or count_params(teacher)
    s_params = count_params(model)
    val = dataset.subset("val")
    main = is_main_process()
    teacher_acc = evaluate_model(teacher, val) if main else float("nan")  # for rank 0's log and manifest
    log(
        f"distill: {teacher_name} ({t_params:,} params, val acc {teacher_acc:.1%}) -> "
        f"{student.model} ({s_params:,} params, {t_params / max(s_params, 1):.1f}x fewer), "
        f"{section.kd.describe()}"
    )
    result = distill(
        model,
        teacher,
        dataset.subset("train"),
        val,
        section.train,
        section.kd,
        log=log,
        out_dir=out_dir / "distill-run",
        resume=resume,
        cache_dir=out_dir / "teacher_cache",
        progress=progress,
        teacher_name=f"teacher {teacher_path}",
    )
    path = out_dir / "student.pt"
    if main:
        _save_trained(
            path,
            model,
            student.model,
            student.kwargs,
            dataset,
            metrics={
                "val_accuracy": result.best_val_accuracy,
                "best_epoch": result.best_epoch,
                "teacher_val_accuracy": teacher_acc,
                "teacher_params": t_params,
                "params": s_params,
                "compression": t_params / s_params if t_params else None,
                "history": result.history,
            },
            parents=[data_path, teacher_path],
            config={"student": to_dict(student), "distill": to_dict(section)},
        )
    barrier()  # every rank returns once student.pt exists
    return path
