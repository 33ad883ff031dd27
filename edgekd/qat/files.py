"""Quantization-aware distillation from artifact files (student.pt, teacher, data.npz): what
``edgekd qat`` and ``edgekd distill --qat`` run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from edgekd.config import apply_overrides, from_dict, load_yaml
from edgekd.errors import ConfigError
from edgekd.qat.config import QatConfig, default_qat_train
from edgekd.qat.distill import Log, QatResult, qat_distill


def load_qat_config(
    path: str | os.PathLike[str] | None, overrides: tuple[str, ...] | list[str] = ()
) -> QatConfig:
    """QatConfig from an optional YAML file (safe_load, unknown keys rejected) plus ``a.b=c`` overrides.

    Every ConfigError about the settings names the file when there is one.
    """
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides))
    try:
        cfg = from_dict(QatConfig, data, "qat")
        cfg.validate()
    except ConfigError as exc:
        if path is None or str(path) in exc.message:
            raise
        raise ConfigError(f"QAT config {path}: {exc.message}", hint=exc.hint) from None
    return cfg


def require_single_process() -> None:
    """ConfigError under torchrun: QAT (with its PTQ baseline and runtime checks) runs in one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "--qat runs in a single process, not under torchrun",
            hint="distil with torchrun, then run `edgekd qat STUDENT.pt --teacher T --data D` once",
        )


def qat_config_for_recipe(recipe: Any) -> QatConfig:
    """QAT settings for ``edgekd distill --qat``: the recipe's KD objective and training device,
    QAT's own bounded fine-tuning schedule (``default_qat_train``)."""
    train = dataclasses.replace(
        default_qat_train(), device=recipe.distill.train.device, num_threads=recipe.distill.train.num_threads
    )
    return QatConfig(kd=dataclasses.replace(recipe.distill.kd), train=train)


def qat_from_files(
    student_path: str | os.PathLike[str],
    teacher_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: QatConfig,
    log: Log | None = None,
) -> QatResult:
    """Load an edgekd student checkpoint, a teacher (checkpoint or ONNX) and a dataset (an npz,
    or a data stage's data.json: QAT trains on its frames in memory, and a lazy dataset too
    large for memory is refused), then run :func:`edgekd.qat.qat_distill` into ``out_dir``
    (parents recorded in the manifest)."""
    from edgekd.data.artifact import open_data
    from edgekd.data.batches import whole_network_arrays
    from edgekd.models.checkpoint import load_checkpoint
    from edgekd.models.fit import checkpoint_input, data_label
    from edgekd.models.teacher import load_teacher

    student_path, teacher_path, data_path = Path(student_path), Path(teacher_path), Path(data_path)
    cfg.validate()
    student, meta = load_checkpoint(student_path)
    data = whole_network_arrays(open_data(data_path), "quantization-aware training")
    checkpoint_input(student_path, meta, "student").check(data, data_label(data, data_path))
    teacher, _name = load_teacher(teacher_path, data)
    result = qat_distill(
        student, teacher, data, cfg, out_dir, log=log, parents=[student_path, teacher_path, data_path]
    )
    return result


__all__ = ["load_qat_config", "qat_config_for_recipe", "qat_from_files", "require_single_process"]
