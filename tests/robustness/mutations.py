"""Generic ways to break a valid file: bytes, YAML text, JSON documents, oracles for no-ops.

Byte flips are searched deterministically (a seeded sequence of positions) until an oracle,
independent of edgekd, says the flipped file is really broken; a flip that leaves a still
valid file (a changed float inside the weights, a zip timestamp) is passed over, never
expected to be refused.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- bytes


def truncate(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of ``data`` (at least one byte gone, at least one kept when possible)."""
    cut = min(max(int(len(data) * fraction), 1), len(data) - 1)
    return data[:cut]


def garbage(size: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def effective_flip(data: bytes, seed: int, broken: Callable[[bytes], bool], tries: int = 400) -> bytes | None:
    """``data`` with one byte XOR-ed at a seeded position such that ``broken(result)``; None if none found.

    The positions come from ``random.Random(seed)``: the same valid file always gives the same
    mutation, so CI is reproducible.
    """
    rng = random.Random(seed)
    for _ in range(tries):
        pos = rng.randrange(len(data))
        mask = 1 << rng.randrange(8)
        flipped = bytearray(data)
        flipped[pos] ^= mask
        result = bytes(flipped)
        if broken(result):
            return result
    return None


def truncate_broken(data: bytes, fraction: float, broken: Callable[[bytes], bool]) -> bytes | None:
    """A truncation near ``fraction`` that the oracle calls broken (cuts at field boundaries may not be)."""
    cut = min(max(int(len(data) * fraction), 1), len(data) - 1)
    for candidate in range(cut, 0, -1):
        if broken(data[:candidate]):
            return data[:candidate]
    return None


# ---------------------------------------------------------------------- oracles


def _finite_tensors(obj: Any) -> bool:
    import torch

    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_finite_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite_tensors(v) for v in obj)
    return True


def _structure(obj: Any) -> Any:
    """Everything but tensor values: keys, plain values, tensor shapes and dtypes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return ("tensor", tuple(obj.shape), str(obj.dtype))
    if isinstance(obj, dict):
        return {k: _structure(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_structure(v) for v in obj]
    return obj


def checkpoint_broken(reference: bytes) -> Callable[[bytes], bool]:
    """Oracle: torch (weights_only) cannot read it, or it reads to another structure or non-finite weights."""
    import torch

    want = _structure(torch.load(io.BytesIO(reference), map_location="cpu", weights_only=True))

    def broken(data: bytes) -> bool:
        try:
            got = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:
            return True
        return _structure(got) != want or not _finite_tensors(got)

    return broken


def npz_broken(reference: bytes) -> Callable[[bytes], bool]:
    want = _npz_summary(reference)

    def broken(data: bytes) -> bool:
        try:
            return _npz_summary(data) != want
        except Exception:
            return True

    return broken


def _npz_summary(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    summary = {k: (v.shape, str(v.dtype)) for k, v in arrays.items()}
    summary["finite"] = bool(np.isfinite(arrays["x"]).all())
    summary["labels"] = arrays["y"].tolist(), arrays["split"].tolist(), arrays["class_names"].tolist()
    return summary


def onnx_broken(reference: bytes) -> Callable[[bytes], bool]:
    want = _onnx_summary(reference)

    def broken(data: bytes) -> bool:
        try:
            return _onnx_summary(data) != want
        except Exception:
            return True

    return broken


def _onnx_summary(data: bytes) -> Any:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return "non-finite"
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 2, 128), dtype=np.float32)
    out = session.run(None, {session.get_inputs()[0].name: x})
    if not all(np.isfinite(o).all() for o in out):
        return "non-finite output"
    sig = [(i.shape, i.type) for i in session.get_inputs()] + [
        (o.shape, o.type) for o in session.get_outputs()
    ]
    return sig, [o.shape for o in out]


class _NumpyOnly(pickle.Unpickler):
    """The corpus's own restricted unpickler (not edgekd's): numpy arrays and latin-1 bytes only."""

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def rml2016_broken(reference: bytes) -> Callable[[bytes], bool]:
    want = _rml2016_summary(reference)

    def broken(data: bytes) -> bool:
        try:
            return _rml2016_summary(data) != want
        except Exception:
            return True

    return broken


def _rml2016_summary(data: bytes) -> Any:
    obj = _NumpyOnly(io.BytesIO(data), encoding="latin1").load()
    return {k: (v.shape, str(v.dtype), bool(np.isfinite(v).all())) for k, v in sorted(obj.items(), key=repr)}


def hdf5_broken(reference: bytes) -> Callable[[bytes], bool]:
    want = _hdf5_summary(reference)

    def broken(data: bytes) -> bool:
        try:
            return _hdf5_summary(data) != want
        except Exception:
            return True

    return broken


def _hdf5_summary(data: bytes) -> Any:
    import h5py

    with h5py.File(io.BytesIO(data), "r") as handle:
        out = {}
        for name in sorted(handle):
            arr = np.asarray(handle[name][()])
            out[name] = (arr.shape, str(arr.dtype), bool(np.isfinite(arr).all()))
        y = np.asarray(handle["Y"][()])
        out["onehot"] = bool(np.allclose(y.sum(axis=1), 1.0))
        return out


# ------------------------------------------------------------------------ YAML text


def deep_flow(depth: int = 3000) -> str:
    return "[" * depth + "]" * depth


def deep_mapping(depth: int = 3000) -> str:
    return "{a: " * depth + "1" + "}" * depth


def alias_bomb(levels: int = 5, width: int = 10) -> str:
    """Nested anchors: ``width ** (levels + 1)`` leaves from a few hundred bytes of YAML."""
    node = "&a0 [" + ", ".join(["lol"] * width) + "]"
    for level in range(1, levels + 1):
        node = f"&a{level} [{node}, " + ", ".join([f"*a{level - 1}"] * (width - 1)) + "]"
    return node


def yaml_syntax_mutations(text: str, first_key: str, marker: Path) -> dict[str, bytes]:
    """Loader-level breakage shared by every YAML kind: ``name -> file bytes``.

    ``first_key`` is a key of the valid text's top level (duplicated to make a duplicate key).
    """
    first_line = next(line for line in text.splitlines() if line.startswith(f"{first_key}:"))
    middle = text.index("\n", len(text) // 2)
    return {
        "empty-file": b"",
        "empty-doc": b"---\n",
        "comments-only": b"# nothing but a comment\n",
        "null-doc": b"null\n",
        "list-doc": b"- a\n- b\n",
        "scalar-doc": b"just a sentence\n",
        "two-docs": (text + "---\n" + text).encode(),
        "dup-top-key": (text + first_line + "\n").encode(),
        "deep-flow-nesting": (text + f"deep: {deep_flow()}\n").encode(),
        "deep-map-nesting": (text + f"deep: {deep_mapping()}\n").encode(),
        "alias-bomb": text.replace(first_line, f"{first_key}: {alias_bomb()}").encode(),
        "python-tag": text.replace(
            first_line, f'{first_key}: !!python/object/apply:os.system ["touch {marker}"]'
        ).encode(),
        "invalid-utf8": text.encode() + b"description2: \xff\xfe\xfa\n",
        "tab-indent": (text + "extra:\n\tkey: 1\n").encode(),
        "unclosed-flow": (text[:middle] + "\nbroken: [a, b\n").encode(),
    }


def replace_once(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once by ``new``; ``old`` must occur (no mutation silently vanishes)."""
    assert old in text, f"mutation anchor {old!r} is not in the valid text"
    return text.replace(old, new, 1)


# ------------------------------------------------------------------------------ JSON


def json_set(doc: dict, path: str, value: Any) -> dict:
    """A copy of ``doc`` with ``path`` (dots; ``entries[onnxruntime/fp32]`` picks by id) set to ``value``."""
    out = copy.deepcopy(doc)
    parent, key = _walk(out, path)
    parent[key] = value
    return out


def json_delete(doc: dict, path: str) -> dict:
    out = copy.deepcopy(doc)
    parent, key = _walk(out, path)
    del parent[key]
    return out


def _walk(doc: Any, path: str) -> tuple[Any, Any]:
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = _step(node, part)
    last = parts[-1]
    if isinstance(node, list):
        return node, int(last)
    return node, last


def _step(node: Any, part: str) -> Any:
    if part.startswith("entries[") and part.endswith("]"):
        wanted = part[len("entries[") : -1]
        return next(e for e in node["entries"] if e["id"] == wanted)
    if isinstance(node, list):
        return node[int(part)]
    return node[part]


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=1, allow_nan=True).encode()
