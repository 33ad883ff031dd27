"""No checkpoint can make edgekd import or call code, or read a path, of its own choosing.

Every command that opens a checkpoint is run through the real CLI on checkpoints that name a
marker module (at the top, or as an ensemble member) or carry a ``pretrained_path``. Each must
end with exit 2 and one ``edgekd: error:`` line that names the file, no traceback, and the
marker module never imported nor called. Then the ways a person grants trust: ``--trust-module``
and ``EDGEKD_TRUST_MODULE``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner, Result

from edgekd.cli.main import cli
from tests.security.conftest import Files, Marker, forge

TARGET = "x86-cpu-onnxruntime-int8"
FAST_BENCH = ["--min-runs", "2", "--min-seconds", "0"]


def _recipe(path: Path, data: Path, **teacher) -> str:
    recipe = {
        "name": "trust",
        "data": {"source": "npz", "path": str(data)},
        "teacher": teacher,
        "distill": {"train": {"epochs": 1, "device": "cpu", "num_threads": 1}},
    }
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _argv(command: str, pt: Path, f: Files, out: Path) -> list[str]:
    """The command line of ``command`` opening the hostile checkpoint ``pt``."""
    data, to = ["--data", str(f.data)], ["--out", str(out)]
    if command == "distill --teacher":
        return [
            "distill",
            "--config",
            _recipe(out.parent / "d.yaml", f.data),
            *data,
            "--teacher",
            str(pt),
            *to,
        ]
    if command == "run (recipe teacher.checkpoint)":
        return ["run", _recipe(out.parent / "r.yaml", f.data, checkpoint=str(pt)), *to]
    return {
        "bench": ["bench", str(pt), *data, *to, *FAST_BENCH],
        "bench --teacher": ["bench", str(f.good), "--teacher", str(pt), *data, *to, *FAST_BENCH],
        "export": ["export", str(pt), *data, *to, "--no-openvino"],
        "deploy": ["deploy", str(pt), "--target", TARGET, *data, *to],
        "gate": ["gate", str(pt), "--target", str(f.torch_target)],
        "qat student": ["qat", str(pt), "--teacher", str(f.good), *data, *to],
        "qat teacher": ["qat", str(f.good), "--teacher", str(pt), *data, *to],
        "ensemble": ["ensemble", str(pt), str(f.good), "--out", str(out / "teachers.pt")],
    }[command]


COMMANDS = [
    "bench",
    "bench --teacher",
    "deploy",
    "distill --teacher",
    "ensemble",
    "export",
    "gate",
    "qat student",
    "qat teacher",
    "run (recipe teacher.checkpoint)",
]


def _module_name(marker: Marker, files: Files, path: Path) -> Path:
    return forge(files.good, path, model_name=marker.model)


def _ensemble_member(marker: Marker, files: Files, path: Path) -> Path:
    kwargs = torch.load(files.ensemble, weights_only=True)["model_kwargs"]
    kwargs["members"][1]["model"] = marker.model
    return forge(files.ensemble, path, model_kwargs=kwargs)


def _pretrained_path(marker: Marker, files: Files, path: Path) -> Path:
    # A real weights file that fits: followed, the command would succeed.
    return forge(files.good, path, model_kwargs={"pretrained_path": str(files.good)})


def _member_pretrained_path(marker: Marker, files: Files, path: Path) -> Path:
    kwargs = torch.load(files.ensemble, weights_only=True)["model_kwargs"]
    kwargs["members"][0]["kwargs"] = {"pretrained_path": str(files.good)}
    return forge(files.ensemble, path, model_kwargs=kwargs)


HOSTILE = {
    "module name": (_module_name, "which would import and run code"),
    "ensemble member module": (_ensemble_member, "which would import and run code"),
    "pretrained_path": (_pretrained_path, "may not choose a file, folder or URL"),
    "member pretrained_path": (_member_pretrained_path, "may not choose a file, folder or URL"),
}


def _invoke(argv: list[str], **env: str) -> Result:
    return CliRunner(env=env or None).invoke(cli, argv)


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("edgekd: error:")]


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_never_chooses_code_or_a_path(
    tmp_path: Path, marker: Marker, files: Files, command: str, hostile: str
) -> None:
    make, why = HOSTILE[hostile]
    evil = make(marker, files, tmp_path / "evil.pt")
    result = _invoke(_argv(command, evil, files, tmp_path / "out"))
    assert not marker.ran(), f"{command}: the marker module ran"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = _error_lines(result)
    assert len(errors) == 1, result.output
    assert str(evil) in errors[0] and why in errors[0], errors[0]


def test_trust_module_lets_a_named_module_through(tmp_path: Path, marker: Marker, files: Files) -> None:
    evil = _module_name(marker, files, tmp_path / "mine.pt")
    out = tmp_path / "out"
    result = _invoke(
        [
            "--trust-module",
            marker.name,
            "export",
            str(evil),
            "--data",
            str(files.data),
            "--out",
            str(out),
            "--no-openvino",
        ]
    )
    assert result.exit_code == 0, result.output
    assert marker.called.read_text() == "called"  # the test can tell a run from a refusal
    assert (out / "mine.onnx").is_file()


def test_trust_comes_from_the_environment_too(tmp_path: Path, marker: Marker, files: Files) -> None:
    evil = _ensemble_member(marker, files, tmp_path / "mine.pt")
    gate = ["gate", str(evil), "--target", str(files.torch_target)]
    result = _invoke(gate, EDGEKD_TRUST_MODULE=f"other.mod {marker.name}")
    assert result.exit_code in (0, 1), result.output  # judged against the budgets, not refused
    assert marker.called.exists()


def test_trust_lasts_one_command(tmp_path: Path, marker: Marker, files: Files) -> None:
    evil = _module_name(marker, files, tmp_path / "mine.pt")
    gate = ["gate", str(evil), "--target", str(files.torch_target)]
    assert _invoke(["--trust-module", marker.name, *gate]).exit_code in (0, 1)
    again = _invoke(gate)
    assert again.exit_code == 2 and "would import and run code" in again.output


def test_trusting_another_module_is_not_enough(tmp_path: Path, marker: Marker, files: Files) -> None:
    evil = _module_name(marker, files, tmp_path / "evil.pt")
    gate = ["gate", str(evil), "--target", str(files.torch_target)]
    result = _invoke(["--trust-module", "tests.models.tiny_factory", *gate])
    assert result.exit_code == 2 and not marker.ran()
    assert f"--trust-module {marker.name}" in _error_lines(result)[0]


def test_a_bad_trust_module_value_is_one_line(tmp_path: Path, files: Files) -> None:
    result = _invoke(
        ["--trust-module", "../evil", "gate", str(files.good), "--target", str(files.torch_target)]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'../evil' is not a Python module name" in _error_lines(result)[0]
