"""ONNX files as files: loading with one-line errors, a summary, optional onnxslim
simplification, and external data for models whose weights pass the protobuf limit.

A protobuf message cannot exceed 2 GiB, so a model with more weights than that must
keep them in a sidecar (``<name>.onnx.data``, ONNX "external data"). The switch is a
size threshold on the weight bytes, so it can be tested with a tiny threshold.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.artifacts import require_file
from edgekd.errors import EdgeKDError, InputFileError, RuntimeUnavailable, ShapeError

if TYPE_CHECKING:
    import onnx

# onnxslim versions this module was written and tested against (0.1.98); the API used is
# ``onnxslim.slim(model_proto) -> model_proto``.
ONNXSLIM_BOUND = "onnxslim>=0.1.90,<0.2"


class SimplifyError(EdgeKDError):
    """onnxslim failed on a model the checker accepted."""


@dataclass
class SimplifyReport:
    """Node counts (all ops) before and after onnxslim, and its version."""

    nodes_before: int
    nodes_after: int
    version: str

    def summary(self) -> str:
        return f"onnxslim {self.version}: {self.nodes_before} -> {self.nodes_after} nodes"


def simplify_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> SimplifyReport:
    """Simplify ``src`` with onnxslim (constant folding, dead-node and redundant-op removal) into ``dst``.

    Raises:
        RuntimeUnavailable: onnxslim is not installed (one line, with the fix).
        SimplifyError: onnxslim raised on this model.
    """
    import onnx

    try:
        import onnxslim
    except Exception as exc:  # ImportError, or a broken install
        raise RuntimeUnavailable(
            f"ONNX simplification needs onnxslim, which is not available: {short_reason(exc)}",
            hint=f"pip install '{ONNXSLIM_BOUND}', or set export.simplify: false",
        ) from None
    model = onnx.load(os.fspath(src))
    before = len(model.graph.node)
    try:
        slim = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted errors on graphs it cannot handle
        raise SimplifyError(
            f"onnxslim {onnxslim.__version__} failed: {short_reason(exc)}",
            hint="set export.simplify: false",
        ) from None
    if slim is None:  # older onnxslim returns None when it wrote nothing
        raise SimplifyError("onnxslim returned no model", hint="set export.simplify: false")
    onnx.save(slim, os.fspath(dst))
    return SimplifyReport(before, len(slim.graph.node), str(onnxslim.__version__))


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers (raw or typed fields; external ones by their recorded length)."""
    import onnx

    total = 0
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            length = {e.key: e.value for e in init.external_data}.get("length")
            total += int(length) if length else 0
            continue
        count = int(np.prod(init.dims, dtype=np.int64))
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += count * itemsize
    return total


def save_with_external_data_if_large(path: str | os.PathLike[str], threshold_bytes: int) -> str | None:
    """Rewrite ``path`` so its weights live in ``<name>.data`` beside it when they exceed ``threshold_bytes``.

    Returns the sidecar's file name, or None when the model stays one file. Tensors below
    1 KiB stay inline (shapes, small constants), as onnx does by default.
    """
    import onnx

    path = Path(path)
    model = onnx.load(os.fspath(path), load_external_data=True)
    if weight_bytes(model) <= threshold_bytes:
        return None
    location = f"{path.name}.data"
    (path.parent / location).unlink(missing_ok=True)  # onnx appends to an existing sidecar
    onnx.save_model(
        model,
        os.fspath(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,
    )
    return location


def external_data_files(path: str | os.PathLike[str]) -> list[str]:
    """Sidecar file names an ONNX file's initializers point to (empty for a self-contained model)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    names = {
        entry.value
        for init in model.graph.initializer
        if init.data_location == onnx.TensorProto.EXTERNAL
        for entry in init.external_data
        if entry.key == "location"
    }
    return sorted(names)


def inspect_onnx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of an ONNX file: inputs/outputs (name, dtype, shape with symbolic dims as
    strings), opset per domain, IR version, producer, node count by op type and the
    number of weight elements. Weights stored externally are not read."""
    model = load_onnx_checked(path, check=False, load_external_data=False)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    return {
        "path": os.fspath(path),
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import},
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializers],
        "outputs": [_value_info(v) for v in graph.output],
        "nodes": len(graph.node),
        "ops": dict(Counter(node.op_type for node in graph.node).most_common()),
        "parameters": int(sum(int(np.prod(init.dims, dtype=np.int64)) for init in graph.initializer)),
        "weight_dtypes": sorted({_dtype_name(init.data_type) for init in graph.initializer}),
    }


def check_onnx_fits_data(
    path: str | os.PathLike[str],
    frame_shape: tuple[int, ...],
    num_classes: int,
    data: str | os.PathLike[str],
) -> None:
    """ShapeError naming both files unless the ONNX model at ``path`` takes the data's frames
    and scores its classes: one float32 input whose shape after the batch axis is
    ``frame_shape`` (e.g. ``(2, 128)``; symbolic dims match anything), and a first output
    ``[batch, num_classes]`` (not compared when that dim is symbolic)."""
    info = inspect_onnx(path)
    hint = "use the dataset the model was trained on, or the model trained on this dataset"
    if len(info["inputs"]) != 1:
        raise ShapeError(
            f"ONNX model {path} has {len(info['inputs'])} inputs; edgekd models take one (the frames)",
            hint="export a model whose only input is the frames",
        )
    inp = info["inputs"][0]
    dims = inp["shape"][1:]
    fits = len(dims) == len(frame_shape) and all(
        not isinstance(want, int) or want <= 0 or want == got
        for want, got in zip(dims, frame_shape, strict=True)
    )
    if not fits or inp["dtype"] != "float32":
        shown = "[" + ", ".join(str(d) for d in inp["shape"]) + "]"
        raise ShapeError(
            f"ONNX model {path} takes {inp['dtype']} input {shown}, but dataset {data} "
            f"has float32 frames {list(frame_shape)}",
            hint=hint,
        )
    out = info["outputs"][0]["shape"] if info["outputs"] else []
    classes = out[-1] if len(out) == 2 and isinstance(out[-1], int) and out[-1] > 0 else None
    if classes is not None and classes != num_classes:
        raise ShapeError(
            f"ONNX model {path} outputs {classes} scores per frame, "
            f"but dataset {data} has {num_classes} classes",
            hint=hint,
        )


def load_onnx_checked(
    path: str | os.PathLike[str], *, check: bool = True, load_external_data: bool = True
) -> onnx.ModelProto:
    """Load an ONNX model; a missing, corrupt or non-ONNX file becomes one InputFileError line."""
    import onnx

    path = require_file(path, "ONNX model")
    try:
        model = onnx.load(os.fspath(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, OSError for missing external data, ...
        raise InputFileError(
            f"{path} is not a readable ONNX model: {short_reason(exc)}",
            hint="re-export it with `edgekd export`",
        ) from None
    # Protobuf parses many random byte strings without complaint; the checker is the real test.
    if not model.HasField("graph") or not model.opset_import:
        raise InputFileError(
            f"{path} is not an ONNX model (no graph)", hint="re-export it with `edgekd export`"
        )
    if check:
        try:
            onnx.checker.check_model(os.fspath(path))
        except Exception as exc:
            raise InputFileError(
                f"{path} fails the ONNX checker: {short_reason(exc)}",
                hint="re-export it with `edgekd export`",
            ) from None
    return model


def _value_info(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return {
        "name": value.name,
        "dtype": _dtype_name(tensor.elem_type) if tensor.elem_type else None,
        "shape": dims,
    }


def _dtype_name(elem_type: int) -> str:
    """ONNX element type -> numpy-style name ("float32", "int8", ...)."""
    import onnx

    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):  # bfloat16/float8 have no plain numpy dtype
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def short_reason(exc: BaseException) -> str:
    """First line of an exception's message, at most 300 characters: the part a one-line error quotes."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
