"""``edgekd search`` and the recipe's search stage behind their options: one search, then the
winner's full distillation through the distillation stage, then search.json and search.html."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgekd.errors import ConfigError
from edgekd.search.config import SearchSection
from edgekd.targets import TargetProfile

Log = Callable[[str], None]


def parse_grid(items: tuple[str, ...] | list[str]) -> dict[str, list[Any]]:
    """``KNOB=V1,V2`` items -> {knob: [values]}; each value read as YAML data (numbers stay
    numbers, ``[1,2,2]`` a list), never as code.

    >>> parse_grid(["width_mult=0.5,0.75", "stem_stride=1"])
    {'width_mult': [0.5, 0.75], 'stem_stride': [1]}
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        knob, sep, values = item.partition("=")
        if not sep or not knob.strip() or not values.strip():
            raise ConfigError(
                f"--grid {item!r} is not KNOB=V1,V2,...", hint="e.g. --grid width_mult=0.5,0.75,1.0"
            )
        try:
            grid[knob.strip()] = [yaml.safe_load(v) for v in _split_values(values)]
        except yaml.YAMLError:
            raise ConfigError(
                f"--grid {item!r}: a value is not valid YAML", hint="e.g. blocks=[1,1,1];[2,2,2]"
            ) from None
    return grid


def _split_values(values: str) -> list[str]:
    # A list value ("[1,1,1]") holds commas: lists are separated by ";" instead.
    return values.split(";") if "[" in values else values.split(",")


def run_search_and_distill(
    section: SearchSection,
    distill: Any,
    *,
    teacher: Path,
    data: Path,
    target: TargetProfile,
    out_dir: Path,
    host: str | None = None,
    threads: int | None = None,
    ssh: Any = None,
    remote_python: str = "python3",
    log: Log = lambda _line: None,
    data_section: Any = None,
    resolve: Any = Path,
) -> tuple[dict[str, Any], Path]:
    """Search, distil the winner fully (``out_dir/student.pt``), write the search report.

    ``distill``: the recipe's :class:`edgekd.pipeline.distill_stage.DistillSection` (the short
    runs use its objective and optimiser). ``data_section`` (the recipe's, paths resolved with
    ``resolve``) brings the unlabelled frames to the winner's full run (the short runs rank the
    candidates on the labelled frames). Returns (search document, student path).
    """
    from edgekd.models.checkpoint import load_checkpoint
    from edgekd.pipeline.distill_stage import StudentSection, stage_distill
    from edgekd.search.run import SearchRequest, finish, search_students

    request = SearchRequest(
        teacher=teacher, data=data, target=target, section=section, kd=distill.kd, train=distill.train,
        out_dir=out_dir, host=host, threads=threads, ssh=ssh, remote_python=remote_python,
    )  # fmt: skip
    outcome = search_students(request, log)
    winner = outcome.winner
    log(f"search: winner {winner.label()}; full distillation ({distill.train.epochs} epochs)")
    # The full run reads the teacher cache the short runs filled: stage_distill's folder
    # (out_dir/teacher_cache, or kd.cache_dir) is the one the search used (run._cache_dir).
    student = stage_distill(
        StudentSection(model=winner.model, kwargs=winner.kwargs_dict()), distill, data, teacher, out_dir, log,
        data_section=data_section, resolve=resolve,
    )  # fmt: skip
    _model, meta = load_checkpoint(student)
    path = finish(outcome.doc, out_dir, final_accuracy=meta.metrics.get("val_accuracy"), student=student)
    log(f"search: wrote {path}")
    return outcome.doc, student


def search_settings(
    recipe: str | None,
    overrides: tuple[str, ...],
    *,
    family: str | None = None,
    grid: dict[str, list[Any]] | None = None,
    budget: float | None = None,
    epochs: int | None = None,
) -> tuple[SearchSection, Any, str]:
    """The search section, the distill section and the target name of ``recipe`` (default: the
    recipe defaults) with the caller's family, grid, budget and epochs over them; validated."""
    from edgekd.pipeline.recipe import Recipe, load_recipe

    loaded = load_recipe(recipe, overrides) if recipe else _default_recipe(Recipe, overrides)
    section = loaded.search
    if family is not None:
        # A new family starts from its own default grid: the recipe's knobs may not apply to it.
        section.space = dataclasses.replace(section.space, family=family, grid={})
    if grid:
        section.space = dataclasses.replace(section.space, grid={**section.space.grid, **grid})
    if budget is not None:
        section.latency_budget_ms = budget
    distill = loaded.distill
    if epochs is not None:
        distill = dataclasses.replace(distill, train=dataclasses.replace(distill.train, epochs=epochs))
    distill.train.validate()
    section.validate()
    return section, distill, section.target or loaded.gate.target


def _default_recipe(recipe_type: Any, overrides: tuple[str, ...]) -> Any:
    """The recipe defaults (with ``--set`` overrides) when no ``--recipe`` is given."""
    from edgekd.config import apply_overrides, from_dict

    return from_dict(recipe_type, apply_overrides({}, list(overrides)))


__all__ = ["parse_grid", "run_search_and_distill", "search_settings"]
