"""Every ConfigError about a recipe file's content names the file."""

from __future__ import annotations

import pytest

from edgekd.errors import ConfigError
from edgekd.pipeline.recipe import load_recipe
from tests.pipeline.test_preflight import _invoke, assert_refused


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("distill:\n  train: {epochs: 0}\n", "epochs"),
        ("distill:\n  kd: {temperature: 0}\n", "temperature"),
        ("colour: red\n", "unknown config key 'colour'"),
        ("export:\n  opset: many\n", "export.opset"),
        ("base_dir: /\n", "'base_dir' is set by edgekd"),
        ("source_file: /etc/passwd\n", "unknown config key 'source_file'"),
    ],
)
def test_recipe_value_errors_name_the_recipe_file(tmp_path, text, says):
    path = tmp_path / "my-recipe.yaml"
    path.write_text("name: x\n" + text)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    line = info.value.one_line()
    assert str(path) in line and says in line, line


def test_the_loaded_recipe_knows_its_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\n")
    recipe = load_recipe(path)
    assert recipe.source_file == str(path) and recipe.base_dir == str(tmp_path.resolve())


def test_recipe_errors_reach_the_user_as_one_line_naming_it(tmp_path):
    path = tmp_path / "my-recipe.yaml"
    path.write_text("name: x\ndistill:\n  train: {epochs: 0}\n")
    assert_refused(_invoke("distill", "--config", path, "--out", tmp_path / "out"), path)
    assert not (tmp_path / "out").exists()
