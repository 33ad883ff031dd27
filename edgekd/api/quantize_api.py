"""``edgekd.quantize``: an FP32 ONNX model -> INT8, calibrated, checked against FP32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.api import inputs
from edgekd.api.distill_api import Log, default_log, with_thread_policy
from edgekd.api.results import QuantizeResult

SNR_RECIPE, PLAIN_RECIPE = "modrec-stratified-snr", "random-256"


@with_thread_policy
def quantize(
    model: str | Path,
    *,
    calibration: Any,
    val: Any = None,
    out: str | Path | None = None,
    calibration_recipe: str | Path | None = None,
    runtime: str = "onnxruntime",
    activation_type: str = "auto",
    method: str = "minmax",
    accuracy_aware: bool = False,
    max_accuracy_drop: float = 0.02,
    min_top1_agreement: float = 0.9,
    require_speedup: bool = False,
    threads: int | None = None,
    log: Log | None = None,
) -> QuantizeResult:
    """Quantize ``model`` (an ONNX file) to INT8 with the quantizer ``runtime`` names.

    Args:
        calibration: the data calibration frames are drawn from: a dataset, a DataLoader or a
            data file (whose train split the recipe draws from, and whose val split judges INT8).
        val: the frames INT8 is judged on (default: the data file's val split, else
            ``calibration`` itself).
        out: the INT8 file, or a folder for it (default: beside ``model``, e.g.
            ``student.int8.onnx``).
        calibration_recipe: a calibration recipe (name in calibration/ or YAML); default
            ``modrec-stratified-snr`` when the data has SNR labels, else ``random-256``.
        runtime: ``onnxruntime`` (QDQ ONNX), ``onnxruntime-dynamic``, ``openvino`` (NNCF IR),
            ``tensorrt-qdq``.
        activation_type, method, accuracy_aware: how (see ``edgekd quantize --help``).
        max_accuracy_drop, min_top1_agreement: the INT8 model must lose at most this accuracy
            and agree with FP32's top-1 on at least this share, or nothing is written.
        require_speedup: fail when INT8 is not faster than FP32 here. threads: timing threads.

    Returns:
        a :class:`QuantizeResult` (the INT8 path, FP32/INT8 accuracy, the quantizer's report).
    """
    from edgekd.artifacts import read_manifest, require_file, rollback_on_failure
    from edgekd.backends.profile_options import resolve_threads
    from edgekd.data.batches import network_input_shape
    from edgekd.export.onnx_graph import check_onnx_fits_data
    from edgekd.pipeline import quantize_stage
    from edgekd.quantize.quantizers import quantizer_for

    threads = resolve_threads(threads)
    model = require_file(Path(model), "ONNX model", hint="run `edgekd export` first")
    dataset, data_path, judged = _datasets(calibration, val)
    recipe = calibration_recipe or (SNR_RECIPE if dataset.snr is not None else PLAIN_RECIPE)
    cfg = _config(
        recipe,
        runtime=runtime,
        activation_type=activation_type,
        calibration_method=method,
        accuracy_aware=accuracy_aware,
        max_accuracy_drop=max_accuracy_drop,
        min_top1_agreement=min_top1_agreement,
        require_speedup=require_speedup,
    )
    if model.suffix.lower() == ".onnx":  # at the door: not after a whole quantization
        where = data_path or "the calibration data"
        check_onnx_fits_data(model, network_input_shape(dataset), dataset.num_classes, where)
    with rollback_on_failure():
        out_path = _out_path(out, quantizer_for(cfg), model)
        quantize_stage.stage_quantize(
            model,
            data_path,
            cfg,
            out_path,
            default_log(log),
            threads=threads,
            dataset=dataset,
            validation=judged,
        )
    manifest = read_manifest(out_path, required=False)
    metrics = manifest.get("metrics") or {}
    return QuantizeResult(
        path=out_path, kind=manifest.get("kind", ""), accuracy=metrics.get("accuracy") or {}, report=metrics
    )


def _datasets(calibration: Any, val: Any) -> tuple[Any, Path | None, Any]:
    """The calibration data (opened or wrapped), its file (None for a dataset) and the frames
    INT8 is judged on (None: the data file's val split)."""
    dataset, data_path = inputs.evaluation_data(calibration, "calibration")
    judged = None
    if val is not None:
        judged = inputs.evaluation_data(val, "val", class_names=dataset.class_names)[0]
    if dataset.split is None:  # the caller's dataset: all of it is the calibration pool
        judged = judged if judged is not None else dataset
        dataset = inputs.as_train_split(dataset)
    return dataset, data_path, judged


def quantizer_names() -> list[str]:
    """The registered quantizers (``runtime=``): built-in and any registered by your own module."""
    from edgekd.quantize.quantizers import QUANTIZERS

    return QUANTIZERS.names()


def _config(recipe: str | Path, **settings: Any) -> Any:
    """The QuantizeConfig of these settings, validated as a recipe's quantize: section is."""
    from edgekd.config import from_dict
    from edgekd.quantize.config import QuantizeConfig

    return from_dict(QuantizeConfig, {"calibration": str(recipe), **settings}, "quantize")


def _out_path(out: str | Path | None, quantizer: Any, model: Path) -> Path:
    """``out`` when it names a file, else the quantizer's name for ``model`` in ``out`` (a
    folder) or beside ``model``."""
    from edgekd.artifacts import ensure_dir

    if out is None:
        return quantizer.output_path(model.parent, model)
    out = Path(out)
    if out.suffix.lower() in (".onnx", ".xml"):
        ensure_dir(out.parent)
        return out
    return quantizer.output_path(ensure_dir(out), model)


__all__ = ["quantize", "quantizer_names"]
