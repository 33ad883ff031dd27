"""``edgekd deploy`` on the command line: table or JSON on success, one line and exit 2 on a mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.main import cli
from tests.deploy.tiny_student import TinyDeploy, build_tiny_deploy

FAST = ["--min-runs", "10", "--min-seconds", "0", "--threads", "1", "--runtimes", "onnxruntime"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDeploy:
    return build_tiny_deploy(tmp_path_factory.mktemp("deploy_cli"))


def _run(*args: str):
    return CliRunner().invoke(cli, ["deploy", *args], catch_exceptions=False)


def test_deploy_prints_the_table_then_json_from_the_cache(tiny: TinyDeploy, tmp_path: Path) -> None:
    out = tmp_path / "out"
    common = [
        str(tiny.student),
        "--target",
        "x86-cpu-onnxruntime-int8",
        "--data",
        str(tiny.data),
        "--out",
        str(out),
    ]
    result = _run(*common, *FAST, "-q")
    assert result.exit_code == 0, result.output
    assert "onnxruntime/int8-u8" in result.output and "chosen" in result.output
    assert "tensorrt/int8" in result.output and "skipped" in result.output  # listed, with a reason
    assert (out / "deploy.json").is_file()

    again = _run(*common, *FAST, "--json")
    assert again.exit_code == 0
    doc = json.loads(again.stdout)
    assert doc["cache"]["build_misses"] == 0 and doc["cache"]["measure_misses"] == 0
    assert (out / doc["deployed"]["file"]).is_file()


@pytest.mark.parametrize(
    ("student", "data", "message"),
    [
        ("model.txt", "data", "must be a .pt checkpoint or an .onnx model"),
        ("student", "missing.npz", "dataset missing.npz does not exist"),
        ("missing.pt", "data", "student missing.pt does not exist"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    tiny: TinyDeploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, student: str, data: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.txt").write_text("not a model")
    student_arg = str(tiny.student) if student == "student" else student
    data_arg = str(tiny.data) if data == "data" else data
    result = CliRunner().invoke(
        cli, ["deploy", student_arg, "--target", "x86-cpu-onnxruntime-fp32", "--data", data_arg, "--out", "o"]
    )
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekd: error:") and message in lines[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "o" / "deploy.json").exists()


def test_unknown_target_is_one_line(tiny: TinyDeploy, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["deploy", str(tiny.student), "--target", "x86-cpu-onnxruntim", "--data", str(tiny.data)]
    )
    assert result.exit_code == 2 and "x86-cpu-onnxruntime" in result.output
