"""The recipe's ``deploy:`` section: strict keys, off by default, and the stage on a tiny student."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.deploy.stage import DeploySection, stage_deploy
from edgekd.errors import ConfigError
from edgekd.pipeline.recipe import load_recipe
from tests.deploy.tiny_student import build_tiny_deploy


def test_recipe_deploy_section_is_typed_and_off_by_default() -> None:
    assert load_recipe("modrec").deploy.enabled is False
    recipe = load_recipe(
        "modrec", ["deploy.enabled=true", "deploy.runtimes=[onnxruntime]", "deploy.threads=1"]
    )
    assert recipe.deploy.enabled and recipe.deploy.runtimes == ["onnxruntime"]
    with pytest.raises(ConfigError, match="deploy"):
        load_recipe("modrec", ["deploy.runtime=onnxruntime"])
    with pytest.raises(ConfigError, match="max_accuracy_drop"):
        load_recipe("modrec", ["deploy.max_accuracy_drop=3"])


def test_stage_deploys_into_the_run_folder(tmp_path: Path) -> None:
    tiny = build_tiny_deploy(tmp_path / "inputs")
    assert stage_deploy(DeploySection(), tiny.student, tiny.data, tmp_path, default_target="x") is None
    section = DeploySection(enabled=True, runtimes=["onnxruntime"], threads=1)
    section.latency.min_runs, section.latency.min_seconds, section.latency.warmup_seconds = 10, 0.0, 0.0
    doc = stage_deploy(section, tiny.student, tiny.data, tmp_path, default_target="x86-cpu-onnxruntime-int8")
    assert doc["target"]["name"] == "x86-cpu-onnxruntime-int8"
    assert (tmp_path / "deploy" / "deploy.json").is_file()
    assert (tmp_path / "deploy" / doc["deployed"]["file"]).is_file()
