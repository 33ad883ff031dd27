"""A recipe's own ``module:`` models are the author's choice: the run that builds them may
re-open the checkpoints it writes from them. Another command given those files needs trust."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from click.testing import CliRunner

from edgekd.cli.main import cli
from tests.security.conftest import Files, Marker

TINY_TRAIN = {"epochs": 1, "batch_size": 32, "device": "cpu", "num_threads": 1}


def _recipe(folder: Path, marker: Marker, data: Path) -> Path:
    # The teacher is an ensemble with the marker model as a member; the student is the marker model.
    members = [
        {"model": marker.model, "kwargs": {"width": 8}},
        {"model": "cnn1d_small", "kwargs": {"width": 4}},
    ]
    recipe = {
        "name": "own-module",
        "data": {"source": "npz", "path": str(data)},
        "teacher": {"model": "ensemble", "kwargs": {"members": members}, "train": dict(TINY_TRAIN)},
        "student": {"model": marker.model, "kwargs": {"width": 4}},
        "distill": {"train": dict(TINY_TRAIN)},
        "export": {"openvino": False},
        "quantize": {"min_top1_agreement": 0.0},
        "bench": {
            "backends": ["torch/fp32", "onnxruntime/fp32"],
            "latency": {"min_runs": 2, "min_seconds": 0.0, "warmup_runs": 1, "warmup_seconds": 0.0},
        },
        "gate": {"enabled": False},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_recipe_runs_its_own_module_models_end_to_end(tmp_path: Path, marker: Marker, files: Files) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", str(_recipe(tmp_path, marker, files.data)), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    student = torch.load(out / "student.pt", weights_only=True)
    assert student["model_name"] == marker.model
    teacher = torch.load(out / "teacher.pt", weights_only=True)
    assert teacher["model_kwargs"]["members"][0]["model"] == marker.model
    assert (out / "bench.json").is_file() and marker.called.exists()

    # The same files given to another command, without the recipe: refused, unless trusted.
    export = ["export", str(out / "student.pt"), "--data", str(files.data), "--out", str(tmp_path / "x")]
    refused = CliRunner().invoke(cli, [*export, "--no-openvino"])
    assert refused.exit_code == 2 and "would import and run code" in refused.output
    trusted = CliRunner().invoke(cli, ["--trust-module", marker.name, *export, "--no-openvino"])
    assert trusted.exit_code == 0, trusted.output


def test_distill_reopens_the_teacher_its_recipe_names(tmp_path: Path, marker: Marker, files: Files) -> None:
    # edgekd distill runs the stages itself: the recipe's names are trusted once it is loaded.
    recipe = {
        "name": "own-teacher",
        "data": {"source": "npz", "path": str(files.data)},
        "teacher": {"model": marker.model, "kwargs": {"width": 4}, "train": dict(TINY_TRAIN)},
        "distill": {"train": dict(TINY_TRAIN)},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "kd"
    result = CliRunner().invoke(cli, ["distill", "--config", str(path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert torch.load(out / "teacher.pt", weights_only=True)["model_name"] == marker.model
    assert (out / "student.pt").is_file()
