"""RadioML 2016 pickles and RadioML 2018 HDF5 files through the recipes that read them."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import (
    CLASSES,
    Hostile,
    HostileSystem,
    rml2016_dict,
    rml2018_arrays,
    write_h5,
    write_rml2016,
)

ENTRIES = ["distill-recipe", "run-recipe"]
FIRST = (CLASSES[0], 0)  # a (modulation, snr) cell of the valid pickle


def _cell(fn):
    def apply(data: dict, valid) -> object:
        data[FIRST] = fn(data[FIRST].copy())
        return data

    return apply


def _poke(value: float):
    def fn(x: np.ndarray) -> np.ndarray:
        x[0, 0, 3] = value
        return x

    return fn


RML2016 = {
    "list-not-dict": lambda d, v: list(d.values()),
    "empty-dict": lambda d, v: {},
    "key-string": lambda d, v: {f"{m}_{s}": x for (m, s), x in d.items()},
    "key-float-snr": lambda d, v: {(m, float(s) + 0.5): x for (m, s), x in d.items()},
    "frames-2d": _cell(lambda x: x.reshape(len(x), -1)),
    "frames-3-channels": _cell(lambda x: np.concatenate([x, x[:, :1]], axis=1)),
    "frames-transposed": _cell(lambda x: np.ascontiguousarray(x.transpose(0, 2, 1))),
    "frames-mixed-length": _cell(lambda x: np.ascontiguousarray(x[:, :, :100])),
    "frames-all-length-64": lambda d, v: {k: np.ascontiguousarray(x[:, :, :64]) for k, x in d.items()},
    "frames-nan": _cell(_poke(np.nan)),
    "frames-inf": _cell(_poke(np.inf)),
    "frames-complex": _cell(lambda x: (x + 1j * x).astype(np.complex64)),
    "frames-strings": _cell(lambda x: x.astype(str)),
    "cells-empty": lambda d, v: {k: x[:0] for k, x in d.items()},
    "hostile-reduce": lambda d, v: {FIRST: Hostile(v.marker_dir / "unpickled")},
    "hostile-system": lambda d, v: HostileSystem(v.marker_dir / "system"),
    "hostile-nested": lambda d, v: {**d, FIRST: [Hostile(v.marker_dir / "nested")]},
}
BYTES = ["truncate-2pct", "truncate-50pct", "truncate-98pct", "empty-file", "garbage", "text-file"]
BYTES += ["flip-0", "flip-1", "flip-2"]


def write_rml2016_mutation(name: str, valid, dest: Path) -> Path:
    data = valid.rml2016.read_bytes()
    if name == "valid":
        dest.write_bytes(data)
    elif name in RML2016:
        write_rml2016(dest, RML2016[name](rml2016_dict(), valid))
    elif name.startswith("truncate-"):
        fraction = int(name.split("-")[1].rstrip("pct")) / 100
        _write_or_skip(dest, mut.truncate_broken(data, fraction, mut.rml2016_broken(data)), name)
    elif name.startswith("flip-"):
        flipped = mut.effective_flip(data, int(name.split("-")[1]), mut.rml2016_broken(data))
        _write_or_skip(dest, flipped, name)
    else:
        dest.write_bytes(
            {"empty-file": b"", "garbage": mut.garbage(), "text-file": b"(BPSK, 0): frames\n"}[name]
        )
    return dest


def _h5(fn):
    def apply(arrays: dict) -> dict:
        return fn({k: v.copy() for k, v in arrays.items()})

    return apply


def _with(key: str, fn):
    return _h5(lambda a: {**a, key: fn(a[key])})


def _without(key: str):
    return _h5(lambda a: {k: v for k, v in a.items() if k != key})


def _x_poke(value: float):
    def fn(x: np.ndarray) -> np.ndarray:
        x[0, 3, 0] = value
        return x

    return fn


RML2018 = {
    "missing-X": _without("X"),
    "missing-Y": _without("Y"),
    "missing-Z": _without("Z"),
    "X-group": _h5(lambda a: {**a, "X": "group"}),
    "X-rank-2": _with("X", lambda x: x.reshape(len(x), -1)),
    "X-channels-first": _with("X", lambda x: np.ascontiguousarray(x.transpose(0, 2, 1))),
    "X-length-64": _with("X", lambda x: np.ascontiguousarray(x[:, :64])),
    "X-nan": _with("X", _x_poke(np.nan)),
    "X-inf": _with("X", _x_poke(np.inf)),
    "X-strings": _with("X", lambda x: x.astype("S8")),
    "Y-not-one-hot": _with("Y", lambda y: np.zeros_like(y)),
    "Y-nan": _with("Y", lambda y: np.where(y == 1, np.nan, y).astype(np.float32)),
    "Y-short": _with("Y", lambda y: y[:-4]),
    "Y-3-columns": _with("Y", lambda y: y[:, :3]),
    "Z-short": _with("Z", lambda z: z[:-4]),
    "Z-nan": _with("Z", lambda z: np.full(z.shape, np.nan, dtype=np.float32)),
    "zero-frames": _h5(lambda a: {k: v[:0] for k, v in a.items()}),
}


def write_rml2018_mutation(name: str, valid, dest: Path) -> Path:
    data = valid.rml2018.read_bytes()
    if name == "valid":
        dest.write_bytes(data)
    elif name in RML2018:
        write_h5(dest, RML2018[name](rml2018_arrays()))
    elif name.startswith("truncate-"):
        fraction = int(name.split("-")[1].rstrip("pct")) / 100
        _write_or_skip(dest, mut.truncate_broken(data, fraction, mut.hdf5_broken(data)), name)
    elif name.startswith("flip-"):
        flipped = mut.effective_flip(data, int(name.split("-")[1]), mut.hdf5_broken(data))
        _write_or_skip(dest, flipped, name)
    else:
        pickled = io.BytesIO()
        pickle.dump(Hostile(valid.marker_dir / "h5-pickle"), pickled)
        dest.write_bytes(
            {
                "empty-file": b"",
                "garbage": mut.garbage(),
                "text-file": b"X Y Z\n",
                "pickle-not-hdf5": pickled.getvalue(),
            }[name]
        )
    return dest


def _write_or_skip(dest: Path, data: bytes | None, name: str) -> None:
    if data is None:
        pytest.skip(f"{name}: no such change of this file breaks it (deterministic search)")
    dest.write_bytes(data)


RML2016_ALL = BYTES + list(RML2016)
RML2018_ALL = [*BYTES, "pickle-not-hdf5", *RML2018]
RUN_SOME = ["truncate-50pct", "frames-nan", "X-nan", "hostile-reduce", "cells-empty", "zero-frames"]
CASES_2016 = matrix("rml2016", RML2016_ALL, ["distill-recipe"])
CASES_2016 += matrix("rml2016", [m for m in RML2016_ALL if m in RUN_SOME], ["run-recipe"])
CASES_2018 = matrix("rml2018", RML2018_ALL, ["distill-recipe"])
CASES_2018 += matrix("rml2018", [m for m in RML2018_ALL if m in RUN_SOME], ["run-recipe"])
VALID_2016 = [case("rml2016", e, "accept", f"valid-{e}", "valid", e) for e in ENTRIES]
VALID_2018 = [case("rml2018", e, "accept", f"valid-{e}", "valid", e) for e in ENTRIES]


@pytest.mark.parametrize(("mutation", "entry"), CASES_2016)
def test_rml2016_refused(valid, box, mutation, entry):
    bad = write_rml2016_mutation(mutation, valid, box.dir / f"{mutation}.pkl")
    expect_refusal(box, argv(entry, valid, box, source="rml2016", source_path=bad), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID_2016)
def test_rml2016_accepted(valid, box, mutation, entry):
    good = write_rml2016_mutation(mutation, valid, box.dir / "rml2016-copy.pkl")
    expect_acceptance(box, argv(entry, valid, box, source="rml2016", source_path=good))


@pytest.mark.parametrize(("mutation", "entry"), CASES_2018)
def test_rml2018_refused(valid, box, mutation, entry):
    bad = write_rml2018_mutation(mutation, valid, box.dir / f"{mutation}.hdf5")
    expect_refusal(box, argv(entry, valid, box, source="rml2018", source_path=bad), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID_2018)
def test_rml2018_accepted(valid, box, mutation, entry):
    good = write_rml2018_mutation(mutation, valid, box.dir / "rml2018-copy.hdf5")
    expect_acceptance(box, argv(entry, valid, box, source="rml2018", source_path=good))
