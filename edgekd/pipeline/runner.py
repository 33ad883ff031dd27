"""Run a whole recipe: data -> teacher -> distill -> export -> quantize -> bench -> report -> gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgekd.artifacts import atomic_write_text
from edgekd.config import dump_yaml
from edgekd.deploy.stage import stage_deploy
from edgekd.pipeline import stages
from edgekd.pipeline.recipe import Recipe
from edgekd.targets import load_target


def run_recipe(recipe: Recipe, out_dir: Path, log: stages.Log = stages._quiet) -> dict[str, Any] | None:
    """Run every stage into ``out_dir``; return paths, the bench document and the gate result.

    Under torchrun every rank trains (data, teacher, distillation: DDP) and rank 0 alone
    goes on to export, quantize, bench, gate and deploy; the other ranks return None once
    the student is written.
    """
    from edgekd.distill.distributed import is_main_process

    started = time.perf_counter()
    stages.preflight_models(recipe)
    log(f"edgekd: running recipe {recipe.name!r} into {out_dir}/")
    if is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        # The resolved config, saved first so a failed run still says what it ran.
        atomic_write_text(out_dir / "recipe.resolved.yaml", dump_yaml(recipe))
    resolve = recipe.path

    data = stages.stage_data(recipe.data, out_dir, resolve, log)
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
    # The gate's target profile also says how each runtime is tuned for the bench.
    target = load_target(recipe.gate.target) if recipe.gate.enabled and recipe.gate.target else None
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
