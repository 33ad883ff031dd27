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
    channels = 3 if recipe.data.source == "imagefolder" else 2
    if not recipe.teacher.checkpoint:
        create_model(recipe.teacher.model, classes, channels, **recipe.teacher.kwargs)
    create_model(recipe.student.model, classes, channels, **recipe.student.kwargs)


def stage_data(
    section: DataSection, out_dir: Path, resolve: Callable[[str], Path], log: Log = _quiet
) -> Path:
    """Load or generate the frames into ``out_dir/data.npz`` (an npz source is used in place).

    Under torchrun only rank 0 generates and writes; the other ranks wait, then read its file.
    """
    from edgekd.distill.distributed import barrier, is_main_process

    if section.source == "npz":
        path = require_file(resolve(section.path or ""), "dataset", hint="set data.path to an existing .npz")
        dataset = load_npz(path)
        if dataset.split is None:
            raise ConfigError(
                f"dataset {path} has no 'split' array", hint="add split (0 train, 1 val, 2 test)"
            )
        log(f"data: {len(dataset)} frames of {list(dataset.input_shape)} from {path}")
        return path
    from edgekd.data.sources import load_dataset

    path = out_dir / "data.npz"
    if not is_main_process():
        barrier()  # rank 0 writes data.npz
        return path
    dataset = load_dataset(section, resolve)
    # A file source is a parent artifact; a folder of images is not hashed as one.
    parents = [resolve(section.path)] if section.source in ("rml2016", "rml2018") and section.path else None
    dataset.save_npz(path, config=to_dict(section), parents=parents)
    counts = {name: int((dataset.split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    log(
        f"data: {len(dataset)} frames of {list(dataset.input_shape)} ({section.source}), "
        f"{dataset.num_classes} classes, splits {counts} -> {path}"
    )
    barrier()
    return path


def _check_fits(dataset: ArrayDataset, input_shape: tuple[int, ...], what: str) -> None:
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise ShapeError(
            f"{what} expects frames of shape {list(input_shape)} "
            f"but the data has {list(dataset.input_shape)}",
            hint="use data of the shape the model was trained on, or retrain it",
        )


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

    dataset = load_npz(data_path)
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
    model = create_model(section.model, dataset.num_classes, dataset.input_shape[0], **section.kwargs)
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
        in_channels=dataset.input_shape[0],
        input_shape=dataset.input_shape,
        class_names=dataset.class_names,
        **record,
    )


def load_teacher(path: Path, dataset: ArrayDataset) -> tuple[Any, str]:
    """A teacher from a checkpoint (.pt) or an ONNX file run as a black box, checked against the data."""
    from edgekd.models.onnx_teacher import OnnxTeacher, is_onnx_path

    if is_onnx_path(path):
        teacher = OnnxTeacher(path)
        teacher.check_input_shape(dataset.input_shape, "data")
        if teacher.num_classes not in (None, dataset.num_classes):
            raise ShapeError(
                f"ONNX teacher {path} gives {teacher.num_classes} logits, "
                f"the data has {dataset.num_classes} classes",
                hint="use a teacher trained on these classes",
            )
        names, name = teacher.class_names, path.name
    else:
        from edgekd.models.checkpoint import load_checkpoint

        teacher, meta = load_checkpoint(path)
        _check_fits(dataset, tuple(meta.input_shape), f"teacher {path}")
        names, name = meta.class_names, meta.model_name
    if names and list(names) != list(dataset.class_names):
        raise ConfigError(
            f"teacher {path} was trained on classes {list(names)}, the data has {dataset.class_names}",
            hint="use a teacher trained on these classes",
        )
    return teacher, name


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

    dataset = load_npz(data_path)
    teacher, teacher_name = load_teacher(teacher_path, dataset)
    torch.manual_seed(section.train.seed)  # seeded initial weights, as for the teacher
    model = create_model(student.model, dataset.num_classes, dataset.input_shape[0], **student.kwargs)
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


def _parity_samples(dataset: ArrayDataset) -> np.ndarray:
    test = dataset.subset("test") if dataset.split is not None else dataset
    return test.x[:PARITY_SAMPLES]


def stage_export(
    student_path: Path,
    data_path: Path,
    export_cfg: Any,
    out_dir: Path,
    log: Log = _quiet,
    *,
    require_tensorrt: bool = False,
    target_shape: list[int] | None = None,
) -> dict:
    """Export the student to ONNX (and OpenVINO IR, a TensorRT engine), each checked against
    PyTorch on real frames.

    ``require_tensorrt``: fail (one line) when ``export.tensorrt`` is set but TensorRT cannot
    build here, instead of logging the reason and going on.
    """
    import torch

    if require_tensorrt and export_cfg.tensorrt is not None:
        from edgekd.export.tensorrt.builder import require_tensorrt as check_tensorrt

        check_tensorrt()  # before any work: an explicit request fails whole

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
    if export_cfg.openvino or export_cfg.tensorrt is not None:
        # PyTorch's logits on the parity frames: the reference of every further format.
        with torch.inference_mode():
            reference = model(torch.from_numpy(samples)).float().numpy()
    if export_cfg.openvino:
        from edgekd.export.openvino_export import export_openvino

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
    if export_cfg.tensorrt is not None:
        from edgekd.export.tensorrt.stage import calibration_frames, tensorrt_engine_stage

        engine = tensorrt_engine_stage(
            onnx_path,
            out_dir,
            export_cfg.tensorrt,
            parity_samples=samples,
            reference=reference,
            calibration=calibration_frames(export_cfg.tensorrt, dataset),
            target_shape=target_shape,
            required=require_tensorrt,
            log=log,
        )
        if engine is not None:
            outputs["tensorrt"] = engine
    return outputs


def stage_quantize(
    onnx_path: Path, data_path: Path, quant_cfg: Any, out_path: Path, log: Log = _quiet
) -> Path:
    """INT8 with ONNX Runtime (QDQ ONNX) or OpenVINO/NNCF (IR), calibrated by a calibration recipe.

    The INT8 model must agree with FP32 (top-1) and lose at most ``max_accuracy_drop``
    of labelled accuracy on the validation split; otherwise it is removed and the
    stage fails with both accuracies. ``accuracy_aware`` keeps the most damaging
    layers in float until the drop is within that budget.
    """
    from edgekd.data.calibration import load_calibration_recipe, select_calibration

    require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    dataset = load_npz(data_path)
    recipe_path = resources.resolve("calibration", quant_cfg.calibration)
    selection = select_calibration(dataset, load_calibration_recipe(recipe_path))
    calibration = selection.samples(dataset)
    val = dataset.subset("val") if dataset.split is not None else dataset
    eval_samples = val.x[:QUANT_EVAL_SAMPLES]
    metrics: dict[str, Any] = {"calibration": selection.to_dict()}
    if quant_cfg.runtime == "openvino":
        from edgekd.quantize.nncf_openvino import quantize_openvino

        controlled = quant_cfg.accuracy_aware
        ov_report = quantize_openvino(
            onnx_path,
            out_path,
            calibration,
            quant_cfg,
            eval_samples=eval_samples,
            val_samples=val.x if controlled else None,
            val_labels=val.y if controlled else None,
        )
        metrics["quantization"] = ov_report.to_dict()
        backend, kind, summary = "openvino", "openvino-int8", "NNCF INT8 (OpenVINO IR)"
    elif quant_cfg.accuracy_aware:
        from edgekd.quantize.accuracy_aware import quantize_onnx_accuracy_aware

        def evaluate(path: Path) -> float:
            return _accuracy_of("onnxruntime", Path(path), val)

        aa_report = quantize_onnx_accuracy_aware(
            onnx_path, out_path, calibration, quant_cfg, evaluate, eval_samples=eval_samples
        )
        metrics["accuracy_aware"] = aa_report.to_dict()
        backend, kind, summary = "onnxruntime", "onnx-int8", aa_report.summary()
    else:
        from edgekd.quantize.ort_static import quantize_onnx_static

        report = quantize_onnx_static(onnx_path, out_path, calibration, quant_cfg, eval_samples=eval_samples)
        metrics["quantization"] = report.to_dict()
        backend, kind = "onnxruntime", "onnx-int8"
        summary = f"activations {report.activation_type}: {report.choice_reason}"
        if report.assessment is not None:
            summary += f"; {report.assessment.summary()}"
            for warning in report.assessment.warnings:
                log(f"quantize: warning: {warning}")
    reference = onnx_path if backend == "onnxruntime" else _openvino_reference(onnx_path)
    metrics["accuracy"] = _int8_accuracy_check(backend, reference, out_path, val, quant_cfg.max_accuracy_drop)
    write_manifest(out_path, kind, parents=[onnx_path, data_path], config=to_dict(quant_cfg), metrics=metrics)
    accuracy = metrics["accuracy"]
    log(
        f"quantize: {out_path} — {summary}; "
        f"val accuracy FP32 {accuracy['fp32']:.2%} -> INT8 {accuracy['int8']:.2%}"
    )
    return out_path


def _openvino_reference(onnx_path: Path) -> Path:
    """The FP32 model OpenVINO INT8 is compared with: the IR beside the ONNX when exported, else the ONNX."""
    xml = onnx_path.with_suffix(".xml")
    return xml if xml.is_file() else onnx_path


def _accuracy_of(backend: str, path: Path, val: ArrayDataset) -> float:
    from edgekd.backends.base import session_from_artifact
    from edgekd.bench.accuracy import evaluate_accuracy

    return evaluate_accuracy(session_from_artifact(backend, path), val).overall


def _int8_accuracy_check(
    backend: str, fp32: Path, int8: Path, val: ArrayDataset, max_drop: float | None
) -> dict[str, float]:
    """Labelled accuracy of both models on ``val`` through the bench evaluator; removes a failing INT8."""
    from edgekd.errors import ParityError

    fp32_acc = _accuracy_of(backend, fp32, val)
    int8_acc = _accuracy_of(backend, int8, val)
    result = {"fp32": fp32_acc, "int8": int8_acc, "drop": fp32_acc - int8_acc, "frames": len(val)}
    if max_drop is not None and fp32_acc - int8_acc > max_drop:
        int8.unlink(missing_ok=True)
        if int8.suffix == ".xml":
            int8.with_suffix(".bin").unlink(missing_ok=True)
        raise ParityError(
            f"INT8 loses {(fp32_acc - int8_acc) * 100:.2f} points of accuracy "
            f"on {len(val)} validation frames "
            f"(FP32 {fp32_acc:.2%}, INT8 {int8_acc:.2%}; allowed {max_drop * 100:.2f})",
            hint="try quantize.calibration_method: entropy or percentile, more calibration samples, "
            "or raise quantize.max_accuracy_drop",
        )
    return result


def bench_candidates(
    artifacts: dict[str, Path], student_path: Path | None, threads: int | None, target: Any = None
) -> list:
    """Map ``{"<backend>/<precision>": file}`` to bench candidates, with the student's size figures.

    With a ``target`` profile each entry is opened with the profile's settings for its runtime
    (see :func:`edgekd.backends.profile_options.options_for_entry`); ``threads`` overrides.
    """
    from edgekd.backends.profile_options import options_for_entry
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
                options=options_for_entry(target, backend, precision or "fp32", threads),
            )
        )
    return candidates


def entry_for_artifact(path: Path) -> str:
    """The bench entry a file gets by default: .pt torch, .xml OpenVINO, .onnx ORT (int8 if Q/DQ)."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "torch/fp32"
    if suffix in (".engine", ".plan", ".trt"):
        # The precision it was built for, from the export manifest.
        built = (read_manifest(path, required=False).get("metrics") or {}).get("precision", "fp16")
        return f"tensorrt/{built}"
    if suffix == ".xml":
        # NNCF marks quantized layers with FakeQuantize in the IR.
        return "openvino/int8" if b"FakeQuantize" in path.read_bytes() else "openvino/fp32"
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
    host: str = "local",
    ssh: Any = None,
    remote_python: str = "python3",
    teacher_path: Path | None = None,
    target: Any = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Latency and accuracy of every artifact through one harness: bench.json + report.html.

    ``host`` "local" runs here; ``ssh://user@device[:port]`` copies the models and a
    self-contained runner to the device and runs the same loop there (see edgekd/remote/).
    ``target`` (a :class:`edgekd.targets.TargetProfile`) supplies each runtime's settings
    and is recorded in bench.json.
    """
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.runner import run_bench
    from edgekd.bench.schema import write_bench

    chosen = {key: path for key, path in artifacts.items() if key in set(bench_cfg.backends)}
    for key in bench_cfg.backends:
        if key.startswith("tensorrt/") and key not in chosen:
            # No engine was built here (no TensorRT or GPU): the entry says why instead of vanishing.
            chosen[key] = out_dir / f"student.{key.partition('/')[2]}.engine"
    if not chosen:
        raise ConfigError(
            f"bench.backends {bench_cfg.backends} selects none of the artifacts {sorted(artifacts)}",
            hint="list entries such as torch/fp32, onnxruntime/fp32, onnxruntime/int8, openvino/fp32",
        )
    dataset = load_npz(data_path)
    test = dataset.subset("test") if dataset.split is not None else dataset
    candidates = bench_candidates(chosen, student_path, bench_cfg.threads, target)
    common = dict(
        name=name,
        out_dir=out_dir,
        reference_id=reference,
        log=log,
        dataset_name=data_path.name,
        split="test" if dataset.split is not None else "all",
    )
    if host != "local":
        from edgekd.remote.bench import run_remote_bench

        doc = run_remote_bench(
            host, candidates, test, bench_cfg, ssh=ssh, remote_python=remote_python, **common
        )
    else:
        doc = run_bench(candidates, test, bench_cfg, **common)
    if target is not None:
        doc["target"] = target.name
    if teacher_path is not None:
        doc["teacher"] = teacher_record(teacher_path, test)
        log(f"teacher {teacher_path.name}: accuracy {doc['teacher']['accuracy']:.2%} on the same frames")
    write_bench(doc, out_dir / "bench.json")
    write_html_report(doc, out_dir / "report.html")
    return doc


def teacher_record(teacher_path: Path, test: ArrayDataset) -> dict[str, Any]:
    """The teacher's accuracy on the bench's frames, through the same evaluator as the students."""
    from edgekd.artifacts import sha256_file
    from edgekd.models.onnx_teacher import is_onnx_path

    backend = "onnxruntime" if is_onnx_path(teacher_path) else "torch"
    return {
        "path": teacher_path.name,
        "sha256": sha256_file(teacher_path),
        "accuracy": _accuracy_of(backend, teacher_path, test),
    }


def stage_gate(bench_doc: dict[str, Any], target_name: str):
    """Judge the bench result against a target profile's budgets (see edgekd/gate/)."""
    from edgekd.gate import evaluate_gate
    from edgekd.targets import load_target

    return evaluate_gate(bench_doc, load_target(target_name))
