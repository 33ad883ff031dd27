"""Checkpoints (.pt): broken, hostile and valid files through every command that opens one."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import MARKER_MODULE, case, expect_acceptance, expect_refusal, matrix
from tests.robustness.valid_files import Hostile, HostileSystem

MODULE_NAME = f"module:{MARKER_MODULE}:fn"


def _payload(valid) -> dict:
    return torch.load(valid.student, map_location="cpu", weights_only=True)


def _first_weight(payload: dict) -> str:
    return next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.dim() > 1)


def _edit(**fields):
    """A payload mutation that sets top-level fields."""

    def apply(payload: dict, valid) -> object:
        payload.update(fields)
        return payload

    return apply


def _delete(key: str):
    def apply(payload: dict, valid) -> object:
        del payload[key]
        return payload

    return apply


def _weights(kind: str):
    def apply(payload: dict, valid) -> object:
        key = _first_weight(payload)
        tensor = payload["state_dict"][key]
        if kind == "nan-all":
            tensor.fill_(float("nan"))
        elif kind == "nan-one":
            tensor.view(-1)[0] = float("nan")
        elif kind == "inf-one":
            tensor.view(-1)[-1] = float("inf")
        elif kind == "reshaped":
            payload["state_dict"][key] = tensor.reshape(-1)
        elif kind == "missing":
            del payload["state_dict"][key]
        elif kind == "extra":
            payload["state_dict"]["intruder.weight"] = torch.zeros(3)
        return payload

    return apply


def _kwargs(model_name: str | None = None, **kwargs):
    def apply(payload: dict, valid) -> object:
        resolved = {k: (v(valid) if callable(v) else v) for k, v in kwargs.items()}
        if model_name is not None:
            payload["model_name"] = model_name
        payload["model_kwargs"] = resolved
        return payload

    return apply


def _members(*members):
    def apply(payload: dict, valid) -> object:
        payload["model_name"] = "ensemble"
        payload["model_kwargs"] = {"members": [m(valid) if callable(m) else m for m in members]}
        return payload

    return apply


def _hostile_in_payload(factory):
    def apply(payload: dict, valid) -> object:
        payload["metrics"] = {"evil": factory(valid.marker_dir / "unpickled")}
        return payload

    return apply


PAYLOAD = {
    "not-a-dict": lambda p, v: [1, 2, 3],
    "bare-state-dict": lambda p, v: p["state_dict"],
    "missing-model_name": _delete("model_name"),
    "missing-state_dict": _delete("state_dict"),
    "missing-class_names": _delete("class_names"),
    "missing-input_shape": _delete("input_shape"),
    "missing-format": _delete("format"),
    "format-v9": _edit(format="edgekd.checkpoint/9"),
    "num_classes-str": _edit(num_classes="4"),
    "num_classes-zero": _edit(num_classes=0),
    "num_classes-negative": _edit(num_classes=-1),
    "num_classes-huge": _edit(num_classes=10**12),
    "in_channels-zero": _edit(in_channels=0),
    "input_shape-str": _edit(input_shape="2x128"),
    "input_shape-empty": _edit(input_shape=[]),
    "input_shape-zero": _edit(input_shape=[2, 0]),
    "input_shape-negative": _edit(input_shape=[2, -128]),
    "input_shape-mismatch": _edit(input_shape=[2, 64]),
    "input_shape-huge": _edit(input_shape=[2, 10**12]),
    "class_names-str": _edit(class_names="ABCD"),
    "class_names-short": _edit(class_names=["8PSK", "BPSK", "QAM16"]),
    "class_names-ints": _edit(class_names=[0, 1, 2, 3]),
    "model_kwargs-list": _edit(model_kwargs=[1]),
    "model_kwargs-unknown": _edit(model_kwargs={"nonsense": 1}),
    "state_dict-list": lambda p, v: {**p, "state_dict": list(p["state_dict"].values())},
    "weight-missing": _weights("missing"),
    "weight-extra": _weights("extra"),
    "weight-reshaped": _weights("reshaped"),
    "weight-nan-all": _weights("nan-all"),
    "weight-nan-one": _weights("nan-one"),
    "weight-inf-one": _weights("inf-one"),
    "model-unknown": _edit(model_name="cnn1d_huge"),
    "model-unknown-source": _edit(model_name="evil:thing"),
    # A file may not choose code to import or call, nor a path to read.
    "model-module": _edit(model_name=MODULE_NAME),
    "ensemble-member-module": _members({"model": MODULE_NAME}, {"model": "cnn1d_small"}),
    "pretrained-path": _kwargs(pretrained_path=lambda v: str(v.teacher)),
    "pretrained-path-traversal": _kwargs(pretrained_path="../../../../../../../../etc/passwd"),
    "ensemble-member-pretrained": _members(
        lambda v: {"model": "cnn1d_small", "kwargs": {"pretrained_path": str(v.teacher)}},
        {"model": "cnn1d_small"},
    ),
    "timm-checkpoint-path": _kwargs("timm:test_resnet", checkpoint_path=lambda v: str(v.teacher)),
    "hostile-reduce-in-payload": _hostile_in_payload(Hostile),
    "hostile-system-in-payload": _hostile_in_payload(HostileSystem),
}


def _bytes_mutation(name: str, data: bytes, valid) -> bytes | None:
    if name.startswith("truncate-"):
        fraction = int(name.split("-")[1].rstrip("pct")) / 100
        return mut.truncate_broken(data, fraction, mut.checkpoint_broken(data))
    if name.startswith("flip-"):
        return mut.effective_flip(data, int(name.split("-")[1]), mut.checkpoint_broken(data))
    return {
        "empty-file": b"",
        "garbage": mut.garbage(),
        "text-file": b"this is not a checkpoint\n",
        "hostile-legacy-pickle": pickle.dumps(Hostile(valid.marker_dir / "unpickled"), protocol=2),
    }[name]


BYTES = ["truncate-2pct", "truncate-50pct", "truncate-98pct", "empty-file", "garbage", "text-file"]
BYTES += ["flip-0", "flip-1", "flip-2", "hostile-legacy-pickle"]
ALL = BYTES + list(PAYLOAD)
HOSTILE = [
    "model-module",
    "ensemble-member-module",
    "pretrained-path",
    "ensemble-member-pretrained",
    "hostile-reduce-in-payload",
    "hostile-legacy-pickle",
]
SOME = [*HOSTILE, "truncate-50pct", "weight-nan-all", "input_shape-mismatch", "missing-state_dict"]

# entry -> the slot the checkpoint goes into
SLOT = {
    "export": "model_pt",
    "bench-pt": "model_pt",
    "gate-static-pt": "model_pt",
    "ensemble": "model_pt",
    "distill-data": "teacher",
    "bench-teacher": "teacher",
    "deploy-pt": "model_pt",
    "qat": "model_pt",
    "qat-teacher": "teacher",
    "distill-recipe": "recipe_teacher",
}
FAST_ENTRIES = ["export", "bench-pt", "gate-static-pt", "ensemble", "distill-data"]
HEAVY_ENTRIES = ["bench-teacher", "deploy-pt", "qat", "qat-teacher", "distill-recipe"]

CASES = matrix("checkpoint", ALL, FAST_ENTRIES) + matrix("checkpoint", SOME, HEAVY_ENTRIES)
VALID = [case("checkpoint", e, "accept", f"valid-{e}", "valid", e) for e in [*FAST_ENTRIES, *HEAVY_ENTRIES]]


def write_mutation(name: str, valid, dest: Path) -> Path:
    """Write checkpoint mutation ``name`` of the valid student to ``dest``; skip a no-op."""
    data = valid.student.read_bytes()
    if name == "valid":
        dest.write_bytes(data)
        return dest
    if name in PAYLOAD:
        torch.save(PAYLOAD[name](_payload(valid), valid), dest)
        return dest
    broken = _bytes_mutation(name, data, valid)
    if broken is None:
        pytest.skip(f"{name}: no byte change of this file breaks it (deterministic search)")
    dest.write_bytes(broken)
    return dest


def _entry(entry: str) -> str:
    return {"qat-teacher": "qat"}.get(entry, entry)


@pytest.mark.parametrize(("mutation", "entry"), CASES)
def test_checkpoint_refused(valid, box, mutation, entry):
    bad = write_mutation(mutation, valid, box.dir / f"{mutation}.pt")
    expect_refusal(box, argv(_entry(entry), valid, box, **{SLOT[entry]: bad}), bad.name)


@pytest.mark.parametrize(("mutation", "entry"), VALID)
def test_checkpoint_accepted(valid, box, mutation, entry):
    good = write_mutation(mutation, valid, box.dir / "student-copy.pt")
    expect_acceptance(box, argv(_entry(entry), valid, box, **{SLOT[entry]: good}))
