"""Static gates: size, parameters and MACs read from a model file, without running it.

A CI job without the device can gate size in seconds. The file must still load in the
runtime the target names (a model no runtime can load never passes), fit the target's
``input_shape`` and be of its precision. The result is a bench-like document marked
``"static": true`` with one entry, so the same evaluator judges it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import read_manifest, require_file, sha256_file
from edgekd.errors import ConfigError, InputFileError, RuntimeUnavailable, ShapeError
from edgekd.targets import TargetProfile

# Inputs of Q/DQ nodes that hold quantization parameters, not model weights.
_QPARAM_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


def onnx_static_metrics(path: Path) -> dict[str, int]:
    """Parameters (weight elements, Q/DQ scales and zero points excluded) and MACs at batch 1.

    MACs count Conv (any rank, grouped), Gemm and MatMul from shapes inferred with every
    symbolic input dimension set to 1; other ops (activations, pooling, norms) are not counted.
    """
    from onnx import shape_inference

    from edgekd.export.onnx_export import load_onnx_checked

    model = load_onnx_checked(path)
    graph = model.graph
    qparams = {
        node.input[i]
        for node in graph.node
        for i in _QPARAM_INPUTS.get(node.op_type, ())
        if i < len(node.input)
    }
    params = sum(
        int(np.prod(init.dims, dtype=np.int64)) for init in graph.initializer if init.name not in qparams
    )
    for graph_input in graph.input:
        for dim in graph_input.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1  # batch 1 (and any other symbolic axis)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises its own InferenceError, ValidationError, ...
        raise InputFileError(f"{path}: ONNX shape inference fails: {str(exc).strip()[:300]}") from None
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    # Weights reach a QDQ Conv through DequantizeLinear: follow it back to the initializer.
    dq_source = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    macs = 0
    for node in graph.node:
        macs += _node_macs(node, shapes, dq_source)
    return {"params": params, "macs": macs}


def _shape(name: str, shapes: dict[str, list[int]], dq_source: dict[str, str]) -> list[int] | None:
    return shapes.get(name) or shapes.get(dq_source.get(name, ""))


def _node_macs(node: Any, shapes: dict[str, list[int]], dq_source: dict[str, str]) -> int:
    if node.op_type == "Conv":
        weight = _shape(node.input[1], shapes, dq_source)
        out = shapes.get(node.output[0])
        if not weight or not out:
            return 0
        # Each output element needs (C_in / groups) * kernel MACs; weight is [C_out, C_in/g, *k].
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
    if node.op_type in ("Gemm", "MatMul"):
        a = _shape(node.input[0], shapes, dq_source)
        out = shapes.get(node.output[0])
        if not a or not out:
            return 0
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        k = a[-2] if trans_a and node.op_type == "Gemm" else a[-1]
        return int(np.prod(out, dtype=np.int64)) * int(k)
    return 0


def _gate_suffixes(backend: Any) -> tuple[str, ...]:
    """The files ``backend`` opens in a static gate: its own, and for TensorRT also ONNX
    (parsed by TensorRT, no engine built). Empty: the backend takes any file."""
    return (*backend.suffixes, ".onnx") if backend.name == "tensorrt" else backend.suffixes


def load_for_target(path: Path, target: TargetProfile) -> Any:
    """Open ``path`` in the runtime ``target`` names, on this machine's CPU (ONNX Runtime,
    OpenVINO, PyTorch) or GPU (TensorRT), and return the session (None for an ONNX file parsed
    by TensorRT). A file that runtime cannot load is an error naming the file, never a pass.

    Raises:
        ConfigError: a file kind the runtime does not read.
        InputFileError: a file the runtime cannot load (unknown domain, opset 99, corrupt).
        RuntimeUnavailable: the runtime is not installed here (TensorRT on a machine without it).
    """
    from edgekd.backends.base import BACKENDS, session_from_artifact
    from edgekd.backends.profile_options import options_for_entry

    backend = BACKENDS.get(target.runtime)
    suffixes = _gate_suffixes(backend)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(
            f"target {target.name} runs {target.runtime}, which does not load {path.name}",
            hint=f"gate a {' or '.join(suffixes)} file, or a bench.json",
        )
    reason = backend.unavailable_reason()
    if reason is not None:
        raise RuntimeUnavailable(
            f"cannot check that {path} loads in {target.runtime} for target {target.name}: {reason}",
            hint="run the static gate where that runtime is installed",
        )
    if target.runtime == "tensorrt" and path.suffix.lower() == ".onnx":
        _parse_onnx_with_tensorrt(path)
        return None
    options = options_for_entry(target, target.runtime, target.precision)
    device = "CPU" if "CPU" in backend.devices else backend.devices[0]  # loadability, not speed
    options = dataclasses.replace(options, device=device, threads=1)
    return session_from_artifact(target.runtime, path, options)


def _parse_onnx_with_tensorrt(path: Path) -> None:
    """InputFileError unless TensorRT's ONNX parser accepts ``path`` (no engine is built)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise InputFileError(f"TensorRT cannot parse {path}: {first}", hint="re-export the model")


def check_finite(path: Path, session: Any, target: TargetProfile) -> None:
    """InputFileError when the model's weights hold NaN or Inf: an ONNX file's float
    initializers are scanned (naming the first bad one); any other model is run once on a
    batch of zeros of the target's ``input_shape`` (or its own static input), whose logits
    must be finite (a NaN weight times 0 is NaN)."""
    if path.suffix.lower() == ".onnx":
        from onnx import numpy_helper

        from edgekd.export.onnx_graph import load_onnx_checked

        for init in load_onnx_checked(path, check=False).graph.initializer:
            values = numpy_helper.to_array(init)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise InputFileError(
                    f"{path}: weight {init.name!r} holds NaN or Inf", hint="re-export or re-train the model"
                )
        return
    if session is None:
        return  # an ONNX file parsed by TensorRT: its initializers were scanned above
    shape = target.input_shape or [1 if i == 0 else d for i, d in enumerate(session.input_shape)]
    if any(d is None for d in shape):
        return  # no concrete input to probe with
    out = session.run(np.zeros(shape, dtype=np.float32))
    if not np.isfinite(out).all():
        raise InputFileError(
            f"{path} outputs NaN or Inf on a batch of zeros: its weights are not finite",
            hint="re-export or re-train the model",
        )


def check_precision(path: Path, target: TargetProfile) -> None:
    """ConfigError when the file's INT8-ness contradicts the target's precision: an FP32 model
    must not pass as ``onnxruntime/int8`` (nor an INT8 one as fp32). One function answers
    "is this model INT8?": :func:`edgekd.runtime.precision.artifact_is_int8`."""
    from edgekd.runtime.precision import artifact_is_int8

    if path.suffix.lower() not in (".onnx", ".xml") or target.runtime == "tensorrt":
        return  # a checkpoint is float; an engine's precision is fixed when it is built
    try:
        is_int8 = artifact_is_int8(path)
    except ValueError as exc:  # the runtime package's plain error for an unreadable model
        raise InputFileError(str(exc), hint="re-export the model") from None
    if is_int8 != (target.precision == "int8"):
        kind = "an INT8" if is_int8 else "a float (not INT8)"
        raise ConfigError(
            f"{path} is {kind} model but target {target.name} judges {target.entry_id}",
            hint="gate the model quantized for this target, or a target of its precision",
        )


def _count(value: Any, what: str, source: Path) -> int | None:
    """A parameter or MAC count from a manifest: a non-negative integer, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputFileError(
            f"manifest of {source} records {what} {value!r}; expected a count >= 0",
            hint="re-export the model so its manifest is rewritten",
        )
    return value


def _static_metrics(path: Path) -> tuple[dict[str, int | None], list[Path]]:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return onnx_static_metrics(path), [path]
    if suffix in (".pt", ".pth"):
        from edgekd.models.checkpoint import load_checkpoint
        from edgekd.models.complexity import count_macs, count_params

        model, meta = load_checkpoint(path)
        return {"params": count_params(model), "macs": count_macs(model, tuple(meta.input_shape))}, [path]
    files = [path, path.with_suffix(".bin")] if suffix == ".xml" else [path]
    manifest = read_manifest(path, required=False)
    known = manifest.get("metrics") if isinstance(manifest, dict) else None
    if not isinstance(known, dict):
        known = {}
    metrics = {k: _count(known.get(k), k, path) for k in ("params", "macs")}
    return metrics, files


def static_result(path: Path, target: TargetProfile) -> dict[str, Any]:
    """A one-entry, bench-like document for ``path`` (.onnx, .pt, OpenVINO .xml, TensorRT
    engine) judged by ``target``: the file must load in the target's runtime, fit its
    ``input_shape`` and be of its precision (INT8 or not); see :func:`load_for_target`."""
    path = require_file(path, "model")
    session = load_for_target(path, target)
    if session is not None and (why := target.input_problem(session.input_shape)) is not None:
        raise ShapeError(f"{path}: {why}", hint="gate the model built for this target")
    check_precision(path, target)
    check_finite(path, session, target)
    metrics, files = _static_metrics(path)
    size = sum(f.stat().st_size for f in files if f.is_file())
    entry_id = target.entry_id
    backend, _, precision = entry_id.partition("/")
    return {
        "schema": "edgekd.bench/1",
        "static": True,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": path.stem,
        "reference": None,
        "entries": [
            {
                "id": entry_id,
                "backend": backend,
                "precision": precision,
                "status": "ok",
                "reason": None,
                "artifact": {"path": str(path), "sha256": sha256_file(path), "size_bytes": size},
                "params": metrics["params"],
                "macs": metrics["macs"],
                "latency_ms": None,
                "accuracy": None,
            }
        ],
    }
