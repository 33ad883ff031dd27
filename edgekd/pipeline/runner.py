"""Run a whole recipe: data -> teacher -> distill -> export -> quantize -> bench -> report -> gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_text, ensure_dir
from edgekd.config import dump_yaml
from edgekd.deploy.stage import stage_deploy
from edgekd.models.trust import modules_named, trusted_code
from edgekd.pipeline import stages
from edgekd.pipeline.preflight import preflight_run
from edgekd.pipeline.recipe import Recipe, recipe_models


def run_recipe(recipe: Recipe, out_dir: Path, log: stages.Log = stages._quiet) -> dict[str, Any] | None:
    """Run every stage into ``out_dir``; return paths, the bench document and the gate result.

    Under torchrun every rank trains (data, teacher, distillation: DDP) and rank 0 alone
    goes on to export, quantize, bench, gate and deploy; the other ranks return None once
    the student is written.
    """
    # teacher.pt and student.pt written below name the recipe's models; re-opening them is allowed.
    names = set().union(*(modules_named(name, kwargs) for name, kwargs in recipe_models(recipe)))
    with trusted_code(names):
        return _run_stages(recipe, out_dir, log)


def _run_stages(recipe: Recipe, out_dir: Path, log: stages.Log) -> dict[str, Any] | None:
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

    data = stages.stage_data(recipe.data, out_dir, resolve, log, checks=checked.data_checks)
    teacher = stages.stage_teacher(recipe.teacher, data, out_dir, resolve, log)
    student = stages.stage_distill(recipe.student, recipe.distill, data, teacher, out_dir, log)
    if not is_main_process():
        return None  # measuring on several ranks at once would only skew the figures
    exported = stages.stage_export(student, data, recipe.export, out_dir, log)
    int8 = stages.stage_quantize(exported["onnx"], data, recipe.quantize, out_dir / "student.int8.onnx", log)

    artifacts = {"torch/fp32": student, "onnxruntime/fp32": exported["onnx"], "onnxruntime/int8": int8}
    if "openvino" in exported:
        artifacts["openvino/fp32"] = exported["openvino"]
    if "tensorrt" in exported:  # only where TensorRT built one (list it in bench.backends)
        artifacts[stages.entry_for_artifact(exported["tensorrt"])] = exported["tensorrt"]
    # The gate's target profile (loaded by the preflight) also says how each runtime is tuned for the bench.
    target = checked.target
    bench_doc = stages.stage_bench(
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
        gate_result = stages.stage_gate(bench_doc, recipe.gate.target)
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
