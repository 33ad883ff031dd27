"""CLI conventions: --json on every reporting command, -q/-v, EDGEKD_* environment variables."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgekd.cli.common import make_log, quiet_option
from edgekd.cli.main import COMMANDS, cli
from edgekd.verbosity import is_verbose
from tests.backends.tiny_models import export_onnx, tiny_module

REPORTING = ("export", "quantize", "bench", "gate", "run", "demo", "targets")


@pytest.mark.parametrize("command", REPORTING)
def test_reporting_commands_offer_json(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--json" in result.output


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"gate", "targets"}))
def test_long_commands_take_quiet_and_verbose(command: str) -> None:
    out = CliRunner().invoke(cli, [command, "--help"]).output
    assert "--quiet" in out and "--verbose" in out, f"{command} lacks -q/-v"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_module(), tmp_path_factory.mktemp("conv") / "tiny.onnx", dynamic_batch=True)


def test_gate_json_alone_prints_the_verdict_on_stdout(tiny_onnx: Path) -> None:
    result = CliRunner().invoke(
        cli, ["gate", str(tiny_onnx), "--target", "x86-cpu-onnxruntime-fp32", "--json"]
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)  # the table went to stderr: stdout is pure JSON
    assert verdict["passed"] is True and verdict["checks"]


def test_gate_json_file_still_writes_a_file(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    argv = ["gate", str(tiny_onnx), "--target", "x86-cpu-onnxruntime-fp32", "--json", str(out)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["checks"]


def test_target_comes_from_the_environment(tiny_onnx: Path) -> None:
    runner = CliRunner(env={"EDGEKD_TARGET": "x86-cpu-onnxruntime-fp32"})
    result = runner.invoke(cli, ["gate", str(tiny_onnx), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["target"] == "x86-cpu-onnxruntime-fp32"


def test_json_everywhere_from_the_environment() -> None:
    result = CliRunner(env={"EDGEKD_JSON": "1"}).invoke(cli, ["targets"])
    assert result.exit_code == 0, result.output
    names = [t["name"] for t in json.loads(result.stdout)]
    assert "x86-cpu-onnxruntime-int8" in names


def test_any_option_comes_from_edgekd_command_option(tiny_onnx: Path, tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    runner = CliRunner(env={"EDGEKD_GATE_JUNIT": str(junit), "EDGEKD_TARGET": "x86-cpu-onnxruntime-fp32"})
    result = runner.invoke(cli, ["gate", str(tiny_onnx)])
    assert result.exit_code == 0, result.output
    assert "<testsuite" in junit.read_text()


@click.command()
@quiet_option
def _talk(quiet: bool) -> None:
    make_log(quiet)("hello")
    click.echo("result")


def test_quiet_verbose_and_their_environment_variables() -> None:
    runner = CliRunner()
    plain = runner.invoke(_talk, [])
    assert (plain.stdout, plain.stderr) == ("result\n", "hello\n")
    assert runner.invoke(_talk, ["-q"]).stderr == ""
    assert CliRunner(env={"EDGEKD_QUIET": "1"}).invoke(_talk, []).stderr == ""
    verbose = runner.invoke(_talk, ["-v"])
    assert verbose.stderr.startswith("[") and verbose.stderr.rstrip().endswith("s] hello")
    both = runner.invoke(_talk, ["-q", "-v"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    # Verbose lasts one command: the process (here, the test run) is quiet again after it.
    assert not is_verbose()
