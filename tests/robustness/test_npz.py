"""Dataset .npz files: broken, hostile and valid files through every command that reads one."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import CLASSES, Hostile, npz_arrays, write_npz


def _set(key: str, fn):
    def apply(arrays: dict, valid) -> dict:
        arrays[key] = fn(arrays[key]) if key in arrays else fn(None)
        return arrays

    return apply


def _drop(key: str):
    def apply(arrays: dict, valid) -> dict:
        del arrays[key]
        return arrays

    return apply


def _poke(value: float, everywhere: bool = False):
    def fn(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        if everywhere:
            x[...] = value
        else:
            x[-1, 0, 5] = value  # a test frame: the one every command reads
        return x

    return fn


def _empty(arrays: dict, valid) -> dict:
    return {k: (v[:0] if k != "class_names" else v) for k, v in arrays.items()}


def _hostile_x(arrays: dict, valid) -> dict:
    arrays["x"] = np.array([Hostile(valid.marker_dir / "unpickled")], dtype=object)
    return arrays


ARRAYS = {
    "missing-x": _drop("x"),
    "missing-y": _drop("y"),
    "x-nan-one": _set("x", _poke(np.nan)),
    "x-inf-one": _set("x", _poke(np.inf)),
    "x-neginf-one": _set("x", _poke(-np.inf)),
    "x-all-nan": _set("x", _poke(np.nan, everywhere=True)),
    "zero-frames": _empty,
    "x-rank-2": _set("x", lambda x: x.reshape(len(x), -1)),
    "x-length-64": _set("x", lambda x: np.ascontiguousarray(x[:, :, :64])),
    "x-channels-3": _set("x", lambda x: np.concatenate([x, x[:, :1]], axis=1)),
    "x-complex64": _set("x", lambda x: (x + 1j * x).astype(np.complex64)),
    "x-strings": _set("x", lambda x: x.astype(str)),
    "y-fractional": _set("y", lambda y: y.astype(np.float32) + 0.5),
    "y-negative": _set("y", lambda y: y - 1),
    "y-out-of-range": _set("y", lambda y: y + 7),
    "y-too-short": _set("y", lambda y: y[:-3]),
    # One-hot rows [N, K] are a documented form of y (load_npz); two 1s in a row are not.
    "y-multi-hot": _set("y", lambda y: np.eye(4, dtype=np.int64)[y] + np.eye(4, dtype=np.int64)[(y + 1) % 4]),
    "class_names-empty": _set("class_names", lambda c: c[:0]),
    "split-all-train": _set("split", lambda s: np.zeros_like(s)),
    "split-code-5": _set("split", lambda s: np.where(s == 2, 5, s).astype(np.int8)),
    "split-too-short": _set("split", lambda s: s[:-5]),
    "snr-too-short": _set("snr", lambda s: s[:-5]),
    "hostile-object-x": _hostile_x,
}


def _huge_header(valid) -> bytes:
    """A zip whose x.npy header claims 10**12 frames (4 PB) and holds a few bytes."""
    buffer = io.BytesIO()
    write_npz_bytes = {k: v for k, v in npz_arrays().items() if k != "x"}
    np.savez(buffer, **write_npz_bytes)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2, 128)}
    )
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
    return buffer.getvalue()


BYTES = ["truncate-2pct", "truncate-50pct", "truncate-98pct", "empty-file", "garbage", "text-file"]
BYTES += ["flip-0", "flip-1", "flip-2", "huge-header"]
ALL = BYTES + list(ARRAYS)
SOME = ["truncate-50pct", "x-nan-one", "x-inf-one", "zero-frames", "x-length-64", "split-all-train"]
SOME += ["hostile-object-x", "huge-header"]

SLOT = {
    "export": "data",
    "quantize": "data",
    "bench-onnx": "data",
    "distill-data": "data",
    "distill-recipe": "source_path",
    "run-recipe": "source_path",
    "deploy-pt": "data",
    "qat": "data",
}
CASES = matrix("npz", ALL, ["export", "quantize", "bench-onnx", "distill-data", "distill-recipe"])
CASES += matrix("npz", SOME, ["run-recipe", "deploy-pt", "qat"])
VALID = [case("npz", e, "accept", f"valid-{e}", "valid", e) for e in SLOT if e not in ("deploy-pt", "qat")]
VALID += [case("npz", "export", "accept", "y-one-hot-export", "y-one-hot", "export")]


def write_mutation(name: str, valid, dest: Path) -> Path:
    data = valid.npz.read_bytes()
    if name == "valid":
        dest.write_bytes(data)
    elif name == "y-one-hot":
        arrays = npz_arrays()
        write_npz(dest, {**arrays, "y": np.eye(len(CLASSES), dtype=np.int64)[arrays["y"]]})
    elif name in ARRAYS:
        write_npz(dest, ARRAYS[name](npz_arrays(), valid))
    elif name.startswith("truncate-"):
        cut = mut.truncate_broken(data, int(name.split("-")[1].rstrip("pct")) / 100, mut.npz_broken(data))
        _write_or_skip(dest, cut, name)
    elif name.startswith("flip-"):
        _write_or_skip(dest, mut.effective_flip(data, int(name.split("-")[1]), mut.npz_broken(data)), name)
    else:
        dest.write_bytes(
            {
                "empty-file": lambda: b"",
                "garbage": mut.garbage,
                "text-file": lambda: b"x,y\n1,2\n",
                "huge-header": lambda: _huge_header(valid),
            }[name]()
        )
    return dest


def _write_or_skip(dest: Path, data: bytes | None, name: str) -> None:
    if data is None:
        pytest.skip(f"{name}: no such change of this file breaks it (deterministic search)")
    dest.write_bytes(data)


def _slots(entry: str, path: Path) -> dict:
    slots = {SLOT[entry]: path}
    if SLOT[entry] == "source_path":
        slots["source"] = "npz"
    return slots


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_npz_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.npz")
    expect_refusal(box, argv(entry, valid, box, **_slots(entry, bad)), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_npz_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "data-copy.npz")
    expect_acceptance(box, argv(entry, valid, box, **_slots(entry, good)))
