from __future__ import annotations

import pytest

from edgekd import resources
from edgekd.errors import ConfigError
from edgekd.targets import load_target


@pytest.mark.parametrize("name", resources.builtin_names("targets"))
def test_every_shipped_target_loads(name):
    target = load_target(name)
    assert target.name == name
    assert target.entry_id.startswith(target.runtime + "/")


def test_shipped_folders_are_found():
    assert "x86-cpu-onnxruntime-int8" in resources.builtin_names("targets")
    assert "modrec" in resources.builtin_names("recipes")


def test_malformed_profile_names_key_and_reason(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nruntime: onnxruntime\nbudgets:\n  max_p90: 3\n")
    with pytest.raises(ConfigError) as err:
        load_target(bad)
    assert "budgets.max_p90" in err.value.message and "max_p90_ms" in err.value.one_line()
    bad.write_text("name: t\nruntime: tflite\n")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        load_target(bad)
    bad.write_text("name: t\nruntime: onnxruntime\nbudgets:\n  min_accuracy: 85\n")
    with pytest.raises(ConfigError, match="fractions"):
        load_target(bad)


def test_unknown_target_name_lists_builtins():
    with pytest.raises(ConfigError) as err:
        load_target("x86-cpu-onnxruntime-int9")
    assert "did you mean 'x86-cpu-onnxruntime-int8'" in err.value.one_line()
