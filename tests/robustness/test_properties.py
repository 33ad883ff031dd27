"""Property tests (hypothesis, derandomized): random damage is either harmless or refused cleanly.

A random byte flip of a checkpoint or an ONNX model leaves either a file the corpus's own
oracle still reads as valid (then edgekd must accept it) or a broken one (then edgekd must
refuse it with every invariant). Out-of-range values in bench.json and target profiles are
drawn from whole ranges, not picked by hand.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.robustness import mutations as mut
from tests.robustness.entries import argv
from tests.robustness.harness import Sandbox, expect_acceptance, expect_refusal
from tests.robustness.valid_files import TARGET_YAML

SETTINGS = settings(
    max_examples=12,
    derandomize=True,  # the same examples on every run: CI is reproducible
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _sandbox(valid) -> tuple[tempfile.TemporaryDirectory, Sandbox]:
    holder = tempfile.TemporaryDirectory(prefix="robust-prop-")
    return holder, Sandbox(Path(holder.name), watched=[valid.root], marker_dir=valid.marker_dir)


def _flip(data: bytes, where: float, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    return bytes(flipped)


# Weighted towards the head of the file, where the structure (pickle, protobuf header) is.
POSITIONS = st.one_of(st.floats(0, 0.1, exclude_max=True), st.floats(0, 1, exclude_max=True))


@pytest.mark.robustness(kind="checkpoint", entry="gate-static-pt", expect="refuse")
@SETTINGS
@given(where=POSITIONS, bit=st.integers(0, 7))
def test_checkpoint_random_flip(valid, where, bit):
    data = valid.student.read_bytes()
    flipped = _flip(data, where, bit)
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "flipped.pt"
        path.write_bytes(flipped)
        command = argv("gate-static-pt", valid, box, model_pt=path)
        if mut.checkpoint_broken(data)(flipped):
            expect_refusal(box, command, path.name)
        else:
            expect_acceptance(box, command)


@pytest.mark.robustness(kind="onnx", entry="gate-static-onnx", expect="refuse")
@SETTINGS
@given(where=POSITIONS, bit=st.integers(0, 7))
def test_onnx_random_flip(valid, where, bit):
    data = valid.onnx.read_bytes()
    flipped = _flip(data, where, bit)
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "flipped.onnx"
        path.write_bytes(flipped)
        command = argv("gate-static-onnx", valid, box, model_onnx=path)
        if mut.onnx_broken(data)(flipped):
            expect_refusal(box, command, path.name)
        else:
            expect_acceptance(box, command)


@pytest.mark.robustness(kind="npz", entry="export", expect="refuse")
@SETTINGS
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_npz_random_flip(valid, where, bit):
    data = valid.npz.read_bytes()
    flipped = _flip(data, where, bit)
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "flipped.npz"
        path.write_bytes(flipped)
        command = argv("export", valid, box, data=path)
        if mut.npz_broken(data)(flipped):
            expect_refusal(box, command, path.name)
        else:
            expect_acceptance(box, command)


ACCURACY_FIELDS = [
    "entries[onnxruntime/fp32].accuracy.overall",
    "entries[onnxruntime/fp32].accuracy.per_class.BPSK",
    "entries[onnxruntime/fp32].agreement_with_reference",
]
NOT_A_FRACTION = st.one_of(
    st.floats(min_value=1.0, exclude_min=True, allow_infinity=True),
    st.floats(max_value=0.0, exclude_max=True, allow_infinity=True),
    st.just(float("nan")),
)


@pytest.mark.robustness(kind="bench.json", entry="gate", expect="refuse")
@SETTINGS
@given(field=st.sampled_from(ACCURACY_FIELDS), value=NOT_A_FRACTION)
def test_bench_accuracy_outside_unit_interval(valid, valid_bench, field, value):
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "bench-range.json"
        path.write_bytes(mut.dumps(mut.json_set(json.loads(valid_bench.read_text()), field, value)))
        expect_refusal(box, argv("gate", valid, box, result=path), path.name)


@pytest.mark.robustness(kind="bench.json", entry="gate-baseline", expect="refuse")
@SETTINGS
@given(
    stat=st.sampled_from(["p50", "p90", "min", "max", "mean"]),
    value=st.one_of(st.floats(max_value=0.0, exclude_max=True), st.just(float("nan")), st.just(float("inf"))),
)
def test_baseline_latency_not_positive(valid, valid_bench, stat, value):
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "baseline-latency.json"
        doc = mut.json_set(
            json.loads(valid_bench.read_text()), f"entries[onnxruntime/fp32].latency_ms.{stat}", value
        )
        path.write_bytes(mut.dumps(doc))
        expect_refusal(box, argv("gate-baseline", valid, box, baseline=path), path.name)


@pytest.mark.robustness(kind="target", entry="targets", expect="refuse")
@SETTINGS
@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_target_ssh_port_out_of_range(valid, port):
    holder, box = _sandbox(valid)
    with holder:
        path = box.dir / "port.yaml"
        path.write_text(mut.replace_once(TARGET_YAML, "host: local", f"host: ssh://pi@device.local:{port}"))
        expect_refusal(box, argv("targets", valid, box, target=path), [path.name, "robust-target"])
