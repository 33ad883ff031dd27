"""``edgekd bench`` never looks like success when a model failed to load or run.

Through the real CLI: a model whose input shape, rank, dtype or input count does not fit
the data, an unknown domain or opset, a wrong class count or NaN weights is exit 2 with one
line naming the model file (and, for shapes, both shapes), no traceback, and nothing at
--out. --keep-going records the failed entries in bench.json and exits 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from edgekd.cli.main import cli
from edgekd.data.dataset import ArrayDataset
from tests.bench.onnx_makers import linear_classifier

FAST = ["--min-runs", "2", "--min-seconds", "0", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench_fail") / "data.npz"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 2, 128)).astype(np.float32)
    ArrayDataset(x=x, y=np.arange(16) % 4, class_names=list("ABCD")).save_npz(path)
    return path


def _bench(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["bench", *argv, *FAST])
    return result.exit_code, result.stdout, result.stderr


def _assert_refused(code: int, stdout: str, stderr: str, out: Path, *fragments: str) -> str:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), stderr
    assert "Traceback" not in stderr + stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists(), list(out.rglob("*"))  # no bench.json, no report.html, no folder
    return lines[0]


# (file name, builder kwargs, fragments the error must hold besides the file name)
BROKEN = [
    ("frames_3x32.onnx", {"frame": (3, 32)}, ["3, 32]", "[1, 2, 128]"]),
    ("rank2.onnx", {"frame": (256,)}, [", 256]", "[1, 2, 128]"]),
    ("batch4.onnx", {"batch": 4}, ["batch 4"]),
    ("int64_input.onnx", {"dtype": TensorProto.INT64}, ["int64"]),
    ("two_inputs.onnx", {"inputs": 2}, ["2 inputs"]),
    ("eight_classes.onnx", {"classes": 8}, ["8 scores", "4 classes"]),
    ("nan_weights.onnx", {"weight": float("nan")}, ["NaN"]),
    ("unknown_domain.onnx", {"extra_domain": "com.example.nowhere"}, []),
    ("opset99.onnx", {"opset": 99}, []),
]


@pytest.mark.parametrize(("name", "kwargs", "fragments"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_model_that_cannot_run_is_exit_2_and_writes_nothing(
    data: Path, tmp_path: Path, name: str, kwargs: dict, fragments: list[str]
) -> None:
    model = linear_classifier(tmp_path / name, **kwargs)
    out = tmp_path / "out"
    # Named explicitly, so the bench itself (not the default labelling) meets the model.
    code, stdout, stderr = _bench(f"onnxruntime/fp32={model}", "--data", str(data), "--out", str(out))
    _assert_refused(code, stdout, stderr, out, name, *fragments)


def test_openvino_refuses_a_shape_before_timing(data: Path, tmp_path: Path) -> None:
    model = linear_classifier(tmp_path / "ov_3x32.onnx", frame=(3, 32))
    out = tmp_path / "out"
    code, stdout, stderr = _bench(f"openvino/fp32={model}", "--data", str(data), "--out", str(out))
    _assert_refused(code, stdout, stderr, out, "ov_3x32.onnx", "[1, 2, 128]")


def test_one_failed_model_among_good_ones_still_fails_and_keep_going_records_it(
    data: Path, tmp_path: Path
) -> None:
    good = linear_classifier(tmp_path / "good.onnx")
    bad = linear_classifier(tmp_path / "bad.onnx", frame=(3, 32))
    out = tmp_path / "out"
    argv = [f"onnxruntime/fp32={good}", f"openvino/fp32={bad}", "--data", str(data), "--out", str(out)]
    argv += ["--reference", "onnxruntime/fp32"]
    code, stdout, stderr = _bench(*argv)
    line = _assert_refused(code, stdout, stderr, out, "1 of 2", "openvino/fp32", "bad.onnx", "--keep-going")
    assert "good.onnx" not in line

    code, stdout, stderr = _bench(*argv, "--keep-going")
    assert code == 0, stderr
    doc = json.loads((out / "bench.json").read_text())
    status = {e["id"]: (e["status"], e["reason"]) for e in doc["entries"]}
    assert status["onnxruntime/fp32"] == ("ok", None)
    assert status["openvino/fp32"][0] == "failed" and "[1, 2, 128]" in status["openvino/fp32"][1]
    assert (out / "report.html").is_file()
    assert doc["dataset"]["input_shape"] == [2, 128]
    assert doc["entries"][0]["input_shape"] == [None, 2, 128]


def test_keep_going_records_a_bench_where_every_model_failed(data: Path, tmp_path: Path) -> None:
    bad = linear_classifier(tmp_path / "bad.onnx", frame=(256,))
    out = tmp_path / "out"
    code, _stdout, stderr = _bench(
        f"onnxruntime/fp32={bad}", "--data", str(data), "--out", str(out), "--keep-going"
    )
    assert code == 0, stderr
    (entry,) = json.loads((out / "bench.json").read_text())["entries"]
    assert entry["status"] == "failed" and "bad.onnx" in entry["reason"]


def test_target_input_shape_must_fit_the_models_and_the_data(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text("name: t\nruntime: onnxruntime\ninput_shape: [1, 2, 64]\n")
    model = linear_classifier(tmp_path / "dynamic.onnx", frame=(2, 128), batch="N")
    out = tmp_path / "out"
    code, stdout, stderr = _bench(str(model), "--data", str(data), "--target", str(target), "--out", str(out))
    _assert_refused(code, stdout, stderr, out, "data.npz", "[2, 128]", "[1, 2, 64]", str(target))
    # The data fits the target and the model fits the data, but the model takes batch 1 only.
    target.write_text("name: t\nruntime: onnxruntime\ninput_shape: [2, 2, 128]\n")
    static = linear_classifier(tmp_path / "batch1.onnx", frame=(2, 128), batch=1)
    code, stdout, stderr = _bench(
        f"onnxruntime/fp32={static}", "--data", str(data), "--target", str(target), "--out", str(out)
    )
    _assert_refused(code, stdout, stderr, out, "batch1.onnx", "batch 1 only", str(target))
