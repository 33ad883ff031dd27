"""``edgekd deploy`` meets the target and the student at the door: before any candidate is
built, the data must fit the target's input_shape and the student must open in its runtime
and give finite scores, one per class. Exit 2, one line naming the file, nothing built."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from tests.bench.onnx_makers import linear_classifier
from tests.deploy.tiny_student import save_data
from tests.export.tiny_nets import FRAME


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_data(tmp_path_factory.mktemp("deploy_door") / "data.npz")


def _deploy(student: Path, target: Path, data: Path, out: Path) -> tuple[int, str]:
    argv = ["deploy", str(student), "--target", str(target), "--data", str(data), "--out", str(out)]
    res = CliRunner().invoke(cli, [*argv, "--runtimes", "onnxruntime", "--min-runs", "2", "--quiet"])
    return res.exit_code, res.stderr + res.stdout


def _assert_refused(code: int, output: str, out: Path, *fragments: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), output
    assert all(f in lines[0] for f in fragments), lines[0]
    assert "Traceback" not in output
    assert not (out / "cache").exists() and not (out / "deploy.json").exists()


def test_the_targets_input_shape_must_fit_the_data(data: Path, tmp_path: Path) -> None:
    student = linear_classifier(tmp_path / "student.onnx", frame=FRAME)
    target = tmp_path / "t.yaml"
    target.write_text("name: t\nruntime: onnxruntime\ninput_shape: [1, 2, 64]\n")
    code, output = _deploy(student, target, data, tmp_path / "out")
    _assert_refused(code, output, tmp_path / "out", "data.npz", "[1, 2, 64]", "t")


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("opset99.onnx", {"opset": 99}, "not a loadable ONNX model"),
        ("unknown_domain.onnx", {"extra_domain": "com.example.nowhere"}, "not a loadable ONNX model"),
        ("five_classes.onnx", {"classes": 5}, "5 scores"),
        ("nan_weights.onnx", {"weight": float("nan")}, "NaN"),
    ],
)
def test_a_student_that_cannot_run_is_refused_before_building(
    data: Path, tmp_path: Path, name: str, kwargs: dict, fragment: str
) -> None:
    student = linear_classifier(tmp_path / name, frame=FRAME, **kwargs)
    target = tmp_path / "t.yaml"
    target.write_text("name: t\nruntime: onnxruntime\n")
    code, output = _deploy(student, target, data, tmp_path / "out")
    _assert_refused(code, output, tmp_path / "out", name, fragment)
