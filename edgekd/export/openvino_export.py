"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``), checked against reference logits.

The IR pair is written into a temporary folder beside the target, compiled and
compared there, and only then renamed into place (``.bin`` first, so an ``.xml``
under the final name always has its weights). Parity runs on the CPU plugin with
``INFERENCE_PRECISION_HINT=f32``: CPUs with AMX/AVX512-BF16 would otherwise
execute in bf16 by default, and the check would measure bf16 rounding rather
than the conversion.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import ensure_dir, place, require_file
from edgekd.errors import RuntimeUnavailable, ShapeError
from edgekd.export.onnx_export import ExportError, as_samples, short_reason
from edgekd.export.parity import ParityConfig, ParityReport, compare_outputs

_BATCH = 64  # frames per inference request during the parity run
# Layers whose runtime precision is "the" precision of a model: where the arithmetic is.
_COMPUTE_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}


def export_openvino(
    onnx_path: str | os.PathLike[str],
    xml_path: str | os.PathLike[str],
    samples: np.ndarray,
    reference_logits: np.ndarray,
    parity: ParityConfig,
    *,
    compress_to_fp16: bool = False,
    reference_name: str = "the reference model",
) -> ParityReport:
    """Convert ``onnx_path`` to OpenVINO IR at ``xml_path`` (+ ``.bin``) and verify it.

    Args:
        onnx_path: a checked FP32 ONNX model (one input).
        xml_path: target ``.xml``; the weights go to the same name with ``.bin``.
        samples: float32 frames ``[N, C, L]`` fed to the IR.
        reference_logits: the expected outputs for ``samples``, ``[N, classes]``
            (PyTorch eval-mode or ONNX Runtime FP32).
        parity: tolerances; with ``compress_to_fp16`` loosen them to fp16 rounding (~1e-3 rel).
        compress_to_fp16: store weights as fp16 (half the ``.bin``); they are
            decompressed to f32 for execution here.
        reference_name: what gave ``reference_logits``, named in errors.

    Returns:
        ParityReport of the IR on the CPU plugin (f32 execution) against the reference.

    Raises:
        RuntimeUnavailable: openvino is not importable. ExportError: conversion failed.
        ShapeError: samples/reference mismatch. ParityError: outputs disagree.
        Nothing is left at ``xml_path`` or beside it on any failure.
    """
    ov = _import_openvino()
    onnx_path = require_file(onnx_path, "ONNX model", hint="run `edgekd export` first")
    parity.validate()
    samples = as_samples(samples, "OpenVINO parity samples")
    reference = np.asarray(reference_logits)
    if len(reference) != len(samples):
        raise ShapeError(
            f"{len(reference)} reference outputs for {len(samples)} samples",
            hint="pass the reference logits of exactly these samples",
        )
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ShapeError(f"OpenVINO IR path {xml_path} must end in .xml", hint="name it e.g. student.xml")
    bin_path = xml_path.with_suffix(".bin")
    ensure_dir(xml_path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{xml_path.name}.", dir=xml_path.parent))
    try:
        # The IR's .xml names its .bin by file stem, so the temporary pair keeps the final names.
        tmp_xml = work / xml_path.name
        try:
            model = ov.convert_model(os.fspath(onnx_path))
            ov.save_model(model, os.fspath(tmp_xml), compress_to_fp16=compress_to_fp16)
        except Exception as exc:  # OpenVINO raises its own OpConversionFailure/GeneralFailure types
            raise ExportError(
                f"OpenVINO cannot convert {onnx_path}: {short_reason(exc)}",
                hint="check the ONNX opset against this OpenVINO version, or set export.openvino: false",
            ) from None
        compiled = compile_cpu(tmp_xml, precision="f32")
        candidate = _infer(compiled, samples)
        report = compare_outputs(
            reference,
            candidate,
            parity,
            what=f"OpenVINO IR {xml_path.name}",
            reference_name=reference_name,
            candidate_name=f"OpenVINO on {xml_path.name}",
        )
        report.raise_if_failed()
        place(tmp_xml.with_suffix(".bin"), bin_path)
        place(tmp_xml, xml_path)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compile_cpu(
    xml_path: str | os.PathLike[str], *, precision: str | None = "f32", threads: int | None = None
) -> Any:
    """Compile an IR (or ONNX) file on the OpenVINO CPU plugin.

    ``precision`` sets ``INFERENCE_PRECISION_HINT`` ("f32", "bf16", "f16"); ``None``
    keeps the plugin's default (bf16 on CPUs with AMX/AVX512-BF16).
    """
    from edgekd.runtime.openvino_open import OvSettings, compile_ov

    _import_openvino()
    config: dict[str, Any] = {}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        return compile_ov(xml_path, OvSettings("CPU", config))
    except Exception as exc:
        raise ExportError(
            f"OpenVINO CPU plugin cannot compile {xml_path}: {short_reason(exc)}",
            hint="re-export the IR with this OpenVINO version",
        ) from None


def openvino_execution_precision(compiled_model: Any) -> str:
    """The precision the CPU plugin really executes a compiled model in: "f32", "bf16", "f16", "u8", ...

    Read from the runtime (execution) graph: the most common element type of the
    activations entering the arithmetic layers (convolutions, fully connected,
    matmul). Activations, not ``runtimePrecision``: with fp16-compressed weights the
    latter says "f16" although the CPU computes in f32 on decompressed weights.
    Falls back to the ``INFERENCE_PRECISION_HINT`` property when there is no such layer.
    """
    counts: Counter[str] = Counter()
    for op in compiled_model.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in _COMPUTE_LAYERS and op.get_input_size():
            counts[op.input(0).get_element_type().get_type_name()] += 1
    if counts:
        return counts.most_common(1)[0][0]
    hint = compiled_model.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def _infer(compiled: Any, samples: np.ndarray) -> np.ndarray:
    """First output of ``compiled`` on ``samples`` ``[N, ...]``, in batches (a static batch is
    honoured), fed the way the bench feeds OpenVINO (:func:`edgekd.runtime.openvino_open.ov_predict`)."""
    from edgekd.runtime.openvino_open import ov_predict

    try:
        return ov_predict(compiled, samples, _BATCH)
    except ValueError as exc:
        raise ShapeError(
            str(exc), hint="export with dynamic_batch: true or pass a multiple of the batch size"
        ) from None


def _import_openvino() -> Any:
    try:
        import openvino
    except Exception as exc:  # ImportError, or OSError when its shared libraries fail to load
        raise RuntimeUnavailable(
            f"OpenVINO is not available: {short_reason(exc)}",
            hint="pip install openvino, or set export.openvino: false",
        ) from None
    return openvino
