"""Pipeline stages. Each reads the artifacts of the stage before and writes its own.

Every stage is usable alone (the CLI verbs call these functions) and writes each
artifact atomically with a manifest beside it, so any stage can be re-run from
the files of the one before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import resources
from edgekd.artifacts import read_manifest, require_file, write_manifest
from edgekd.config import to_dict
from edgekd.data.dataset import ArrayDataset, load_npz
from edgekd.errors import ConfigError, ShapeError
from edgekd.pipeline.recipe import DataSection, DistillSection, Recipe, StudentSection, TeacherSection

Log = Callable[[str], None]
PARITY_SAMPLES = 256  # real test frames compared between PyTorch and each export
QUANT_EVAL_SAMPLES = 512  # validation frames on which INT8 must agree with FP32


def _quiet(_: str) -> None:
    pass


def preflight_models(recipe: Recipe) -> None:
    """Build the student (and the teacher to train) once, empty, so a wrong model name or
    argument fails in a second, before any data is generated or trained on."""
    from edgekd.models.factory import create_model

    classes = len(recipe.data.synthetic.classes) if recipe.data.source == "synthetic_modulation" else 2
    if not recipe.teacher.checkpoint:
        create_model(recipe.teacher.model, classes, 2, **recipe.teacher.kwargs)
    create_model(recipe.student.model, classes, 2, **recipe.student.kwargs)


def stage_data(
    section: DataSection, out_dir: Path, resolve: Callable[[str], Path], log: Log = _quiet
) -> Path:
    """Generate the synthetic set into ``out_dir/data.npz``, or point at the given npz."""
    if section.source == "npz":
        path = require_file(resolve(section.path or ""), "dataset", hint="set data.path to an existing .npz")
        dataset = load_npz(path)
        if dataset.split is None:
            raise ConfigError(
                f"dataset {path} has no 'split' array", hint="add split (0 train, 1 val, 2 test)"
            )
        log(f"data: {len(dataset)} frames of {list(dataset.input_shape)} from {path}")
        return path
    from edgekd.data.modulation import generate_modulation_dataset

    dataset = generate_modulation_dataset(section.synthetic)
    path = out_dir / "data.npz"
    dataset.save_npz(path, config=to_dict(section))
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} synthetic frames of {list(dataset.input_shape)}, "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )
    return path


def _check_fits(dataset: ArrayDataset, input_shape: tuple[int, ...], what: str) -> None:
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise ShapeError(
            f"{what} expects frames of shape {list(input_shape)} "
            f"but the data has {list(dataset.input_shape)}",
            hint="use data of the shape the model was trained on, or retrain it",
        )


def stage_teacher(
    section: TeacherSection, data_path: Path, out_dir: Path, resolve: Callable[[str], Path], log: Log = _quiet
) -> Path:
    """Train the teacher into ``out_dir/teacher.pt``, or check and return the given checkpoint."""
    from edgekd.models.checkpoint import load_checkpoint
    from edgekd.models.factory import create_model

    dataset = load_npz(data_path)
    if section.checkpoint:
        path = require_file(resolve(section.checkpoint), "teacher checkpoint")
        _, meta = load_checkpoint(path)
        _check_fits(dataset, tuple(meta.input_shape), f"teacher {path}")
        if list(meta.class_names) != list(dataset.class_names):
            raise ConfigError(
                f"teacher {path} was trained on classes {meta.class_names}, "
                f"the data has {dataset.class_names}",
                hint="use a teacher trained on these classes",
            )
        log(f"teacher: loaded {path}")
        return path
    from edgekd.distill.train import train_supervised
    from edgekd.models.complexity import count_params

    model = create_model(section.model, dataset.num_classes, dataset.input_shape[0], **section.kwargs)
    log(f"teacher: training {section.model} ({count_params(model):,} parameters)")
    result = train_supervised(model, dataset.subset("train"), dataset.subset("val"), section.train, log=log)
    path = out_dir / "teacher.pt"
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
        in_channels=dataset.input_shape[0],
        input_shape=dataset.input_shape,
        class_names=dataset.class_names,
        **record,
    )


def stage_distill(
    student: StudentSection,
    section: DistillSection,
    data_path: Path,
    teacher_path: Path,
    out_dir: Path,
    log: Log = _quiet,
) -> Path:
    """Distil the teacher into the student: ``out_dir/student.pt``."""
    from edgekd.distill.train import distill, evaluate_model
    from edgekd.models.checkpoint import load_checkpoint
    from edgekd.models.complexity import count_params
    from edgekd.models.factory import create_model

    dataset = load_npz(data_path)
    teacher, meta = load_checkpoint(teacher_path)
    _check_fits(dataset, tuple(meta.input_shape), f"teacher {teacher_path}")
    model = create_model(student.model, dataset.num_classes, dataset.input_shape[0], **student.kwargs)
    t_params, s_params = count_params(teacher), count_params(model)
    val = dataset.subset("val")
    teacher_acc = evaluate_model(teacher, val)
    log(
        f"distill: {meta.model_name} ({t_params:,} params, val acc {teacher_acc:.1%}) -> "
        f"{student.model} ({s_params:,} params, {t_params / s_params:.1f}x fewer), "
        f"loss {section.kd.loss} T={section.kd.temperature:g} alpha={section.kd.alpha:g}"
    )
    result = distill(model, teacher, dataset.subset("train"), val, section.train, section.kd, log=log)
    path = out_dir / "student.pt"
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
            "compression": t_params / s_params,
            "history": result.history,
        },
        parents=[data_path, teacher_path],
        config={"student": to_dict(student), "distill": to_dict(section)},
    )
    return path


def _parity_samples(dataset: ArrayDataset) -> np.ndarray:
    test = dataset.subset("test") if dataset.split is not None else dataset
    return test.x[:PARITY_SAMPLES]


def stage_export(
    student_path: Path, data_path: Path, export_cfg: Any, out_dir: Path, log: Log = _quiet
) -> dict:
    """Export the student to ONNX (and OpenVINO IR), each checked against PyTorch on real frames."""
    import torch

    from edgekd.export.onnx_export import export_onnx
    from edgekd.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(student_path)
    dataset = load_npz(data_path)
    _check_fits(dataset, tuple(meta.input_shape), f"model {student_path}")
    samples = _parity_samples(dataset)
    outputs: dict[str, Path] = {}
    onnx_path = out_dir / f"{student_path.stem}.onnx"
    parity = export_onnx(model, samples, onnx_path, export_cfg)
    write_manifest(
        onnx_path,
        "onnx",
        parents=[student_path],
        config=to_dict(export_cfg),
        metrics={"parity": parity.to_dict()},
    )
    log(f"export: {onnx_path} — {parity.summary()}")
    outputs["onnx"] = onnx_path
    if export_cfg.openvino:
        from edgekd.export.openvino_export import export_openvino

        with torch.inference_mode():
            reference = model(torch.from_numpy(samples)).float().numpy()
        xml_path = out_dir / f"{student_path.stem}.xml"
        ov_parity = export_openvino(onnx_path, xml_path, samples, reference, export_cfg.parity)
        write_manifest(
            xml_path,
            "openvino-ir",
            parents=[onnx_path],
            config=to_dict(export_cfg),
            metrics={"parity": ov_parity.to_dict()},
        )
        log(f"export: {xml_path} — {ov_parity.summary()}")
        outputs["openvino"] = xml_path
    return outputs


def stage_quantize(
    onnx_path: Path, data_path: Path, quant_cfg: Any, out_path: Path, log: Log = _quiet
) -> Path:
    """Static INT8 (QDQ) with ONNX Runtime, calibrated on frames chosen by a calibration recipe.

    The INT8 model must agree with FP32 (top-1) and lose at most ``max_accuracy_drop``
    of labelled accuracy on the validation split; otherwise it is removed and the
    stage fails with both accuracies.
    """
    from edgekd.data.calibration import load_calibration_recipe, select_calibration
    from edgekd.quantize.ort_static import quantize_onnx_static

    require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    dataset = load_npz(data_path)
    recipe_path = resources.resolve("calibration", quant_cfg.calibration)
    calib_recipe = load_calibration_recipe(recipe_path)
    selection = select_calibration(dataset, calib_recipe)
    val = dataset.subset("val") if dataset.split is not None else dataset
    report = quantize_onnx_static(
        onnx_path,
        out_path,
        selection.samples(dataset),
        quant_cfg,
        eval_samples=val.x[:QUANT_EVAL_SAMPLES],
    )
    accuracy = _int8_accuracy_check(onnx_path, out_path, val, quant_cfg.max_accuracy_drop)
    write_manifest(
        out_path,
        "onnx-int8",
        parents=[onnx_path, data_path],
        config=to_dict(quant_cfg),
        metrics={"quantization": report.to_dict(), "accuracy": accuracy, "calibration": selection.to_dict()},
    )
    log(
        f"quantize: {out_path} — activations {report.activation_type}: {report.choice_reason}; "
        f"val accuracy FP32 {accuracy['fp32']:.2%} -> INT8 {accuracy['int8']:.2%}"
    )
    return out_path


def _int8_accuracy_check(
    fp32: Path, int8: Path, val: ArrayDataset, max_drop: float | None
) -> dict[str, float]:
    """Labelled accuracy of both models on ``val`` through the bench evaluator; removes a failing INT8."""
    from edgekd.backends.base import session_from_artifact
    from edgekd.bench.accuracy import evaluate_accuracy
    from edgekd.errors import ParityError

    fp32_acc = evaluate_accuracy(session_from_artifact("onnxruntime", fp32), val).overall
    int8_acc = evaluate_accuracy(session_from_artifact("onnxruntime", int8), val).overall
    result = {"fp32": fp32_acc, "int8": int8_acc, "drop": fp32_acc - int8_acc, "frames": len(val)}
    if max_drop is not None and fp32_acc - int8_acc > max_drop:
        int8.unlink(missing_ok=True)
        raise ParityError(
            f"INT8 loses {(fp32_acc - int8_acc) * 100:.2f} points of accuracy "
            f"on {len(val)} validation frames "
            f"(FP32 {fp32_acc:.2%}, INT8 {int8_acc:.2%}; allowed {max_drop * 100:.2f})",
            hint="try quantize.calibration_method: entropy or percentile, more calibration samples, "
            "or raise quantize.max_accuracy_drop",
        )
    return result


def bench_candidates(artifacts: dict[str, Path], student_path: Path | None, threads: int | None) -> list:
    """Map ``{"<backend>/<precision>": file}`` to bench candidates, with the student's size figures."""
    from edgekd.backends.base import SessionOptions
    from edgekd.bench.runner import BenchCandidate

    params = macs = None
    if student_path is not None:
        metrics = read_manifest(student_path, required=False).get("metrics") or {}
        params, macs = metrics.get("params"), metrics.get("macs")
    candidates = []
    for entry_id, path in artifacts.items():
        backend, _, precision = entry_id.partition("/")
        candidates.append(
            BenchCandidate(
                backend=backend,
                precision=precision or "fp32",
                artifact=Path(path),
                params=params,
                macs=macs,
                options=SessionOptions(threads=threads, precision=precision or "fp32"),
            )
        )
    return candidates


def entry_for_artifact(path: Path) -> str:
    """The bench entry a file gets by default: .pt torch, .xml OpenVINO, .onnx ORT (int8 if Q/DQ)."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "torch/fp32"
    if suffix == ".xml":
        return "openvino/fp32"
    if suffix == ".onnx":
        from edgekd.export.onnx_export import load_onnx_checked

        graph = load_onnx_checked(path).graph
        quantized = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)
        return "onnxruntime/int8" if quantized else "onnxruntime/fp32"
    raise ConfigError(
        f"cannot tell which runtime runs {path}",
        hint="name it: BACKEND/PRECISION=FILE, e.g. openvino/fp32=model.onnx",
    )


def stage_bench(
    artifacts: dict[str, Path],
    student_path: Path | None,
    data_path: Path,
    bench_cfg: Any,
    out_dir: Path,
    *,
    name: str,
    reference: str = "torch/fp32",
    log: Log = _quiet,
) -> dict[str, Any]:
    """Latency and accuracy of every artifact through one harness: bench.json + report.html."""
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.runner import run_bench
    from edgekd.bench.schema import write_bench

    chosen = {key: path for key, path in artifacts.items() if key in set(bench_cfg.backends)}
    if not chosen:
        raise ConfigError(
            f"bench.backends {bench_cfg.backends} selects none of the artifacts {sorted(artifacts)}",
            hint="list entries such as torch/fp32, onnxruntime/fp32, onnxruntime/int8, openvino/fp32",
        )
    dataset = load_npz(data_path)
    test = dataset.subset("test") if dataset.split is not None else dataset
    candidates = bench_candidates(chosen, student_path, bench_cfg.threads)
    doc = run_bench(
        candidates,
        test,
        bench_cfg,
        name=name,
        out_dir=out_dir,
        reference_id=reference,
        log=log,
        dataset_name=data_path.name,
        split="test" if dataset.split is not None else "all",
    )
    write_bench(doc, out_dir / "bench.json")
    write_html_report(doc, out_dir / "report.html")
    return doc


def stage_gate(bench_doc: dict[str, Any], target_name: str):
    """Judge the bench result against a target profile's budgets (see edgekd/gate/)."""
    from edgekd.gate import evaluate_gate
    from edgekd.targets import load_target

    return evaluate_gate(bench_doc, load_target(target_name))
