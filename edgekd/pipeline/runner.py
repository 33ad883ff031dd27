"""Run a whole recipe: data -> teacher -> [search ->] distill -> export -> quantize -> bench -> gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_text, ensure_dir
from edgekd.config import dump_yaml
from edgekd.deploy.stage import stage_deploy
from edgekd.models.trust import modules_named, trusted_code

# Stages are called as module attributes: tests replace one in its own module.
from edgekd.pipeline import data_stage, distill_stage, export_stage, measure, quantize_stage, teacher_stage
from edgekd.pipeline.checks import Log, _quiet
from edgekd.pipeline.preflight import preflight_run
from edgekd.pipeline.recipe import Recipe, recipe_models


def run_recipe(recipe: Recipe, out_dir: Path, log: Log = _quiet) -> dict[str, Any] | None:
    """Run every stage into ``out_dir``; return paths, the bench document and the gate result.

    Under torchrun every rank trains (data, teacher, distillation: DDP) and rank 0 alone
    goes on to export, quantize, bench, gate and deploy; the other ranks return None once
    the student is written.
    """
    # teacher.pt and student.pt written below name the recipe's models; re-opening them is allowed.
    names = set().union(*(modules_named(name, kwargs) for name, kwargs in recipe_models(recipe)))
    with trusted_code(names):
        return _run_stages(recipe, out_dir, log)


def _convert(
    recipe: Recipe, student: Path, data: Path, out_dir: Path, target: Any, log: Log
) -> tuple[Path, dict[str, Path]]:
    """Export, then quantize the ONNX export with the recipe's quantizer, into the path that
    quantizer names (``student.int8.onnx``, ``student.int8.xml``...)."""
    from edgekd.backends.profile_options import resolve_threads
    from edgekd.quantize.quantizers import quantizer_for

    exported = export_stage.stage_export(student, data, recipe.export, out_dir, log)
    out = quantizer_for(recipe.quantize).output_path(out_dir, exported["onnx"])
    threads = resolve_threads(recipe.bench.threads, target)  # the count the bench times with
    int8 = quantize_stage.stage_quantize(exported["onnx"], data, recipe.quantize, out, log, threads=threads)
    return int8, exported


def _student(recipe: Recipe, data: Path, teacher: Path | None, out_dir: Path, log: Log) -> Path:
    """The distillation stage, or with ``search.enabled`` a search whose winner it distils."""
    if not recipe.search.enabled:
        return distill_stage.stage_distill(
            recipe.student,
            recipe.distill,
            data,
            teacher,
            out_dir,
            log,
            data_section=recipe.data,
            resolve=recipe.path,
        )
    import os

    from edgekd.errors import ConfigError
    from edgekd.search.command import run_search_and_distill
    from edgekd.targets import load_target

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every rank would build and time every candidate at once, skewing the latencies it ranks by.
        raise ConfigError(
            "search.enabled runs in one process, not under torchrun",
            hint="run the search with edgekd search, then torchrun edgekd run with its student",
        )
    target = load_target(recipe.search.target or recipe.gate.target)
    _doc, student = run_search_and_distill(
        recipe.search, recipe.distill, teacher=teacher, data=data, target=target, out_dir=out_dir,
        threads=recipe.bench.threads, log=log, data_section=recipe.data, resolve=recipe.path,
    )  # fmt: skip
    return student


def _run_stages(recipe: Recipe, out_dir: Path, log: Log) -> dict[str, Any] | None:
    from edgekd.distill.distributed import is_main_process

    started = time.perf_counter()
    # Every file a later stage reads, checked before anything is written (see preflight.py).
    checked = preflight_run(recipe)
    log(f"edgekd: running recipe {recipe.name!r} into {out_dir}/")
    if is_main_process():
        ensure_dir(out_dir)
        # The resolved config, saved first: kept with the first stage that completes, so a run
        # that fails later still says what it ran, and one refused at the start leaves nothing.
        atomic_write_text(out_dir / "recipe.resolved.yaml", dump_yaml(recipe))
    resolve = recipe.path

    data = data_stage.stage_data(recipe.data, out_dir, resolve, log, checks=checked.data_checks)
    teacher = teacher_stage.stage_teacher(
        recipe.teacher, data, out_dir, resolve, log, hide_labels=recipe.data.hide_labels
    )
    student = _student(recipe, data, teacher, out_dir, log)
    if not is_main_process():
        return None  # measuring on several ranks at once would only skew the figures
    # The gate's target profile (loaded by the preflight) also says how each runtime is tuned for
    # the bench, and how many threads INT8 is timed against FP32 with.
    target = checked.target
    int8, exported = _convert(recipe, student, data, out_dir, target, log)
    # Every file the stages produced, under the bench entry it opens as (a TensorRT engine only
    # where one was built: list it in bench.backends).
    produced = [student, exported.pop("onnx"), int8, *exported.values()]
    artifacts = {measure.entry_for_artifact(path): path for path in produced}
    for entry in recipe.bench.backends:
        if entry not in artifacts and not entry.startswith("tensorrt/"):  # the bench explains an engine
            log(
                f"bench: {entry} is listed in bench.backends but this run wrote no such file "
                f"(it wrote {', '.join(sorted(artifacts))})"
            )
    bench_doc = measure.stage_bench(
        artifacts,
        student,
        data,
        recipe.bench,
        out_dir,
        name=recipe.name,
        teacher_path=teacher,
        target=target,
        log=log,
    )
    gate_result = None
    if recipe.gate.enabled:
        gate_result = measure.stage_gate(bench_doc, recipe.gate.target)
    deploy_doc = stage_deploy(
        recipe.deploy, student, data, out_dir, default_target=recipe.gate.target, log=log
    )
    return {
        "out_dir": out_dir,
        "bench": bench_doc,
        "gate": gate_result,
        "deploy": deploy_doc,
        "seconds": time.perf_counter() - started,
    }
