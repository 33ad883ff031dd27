"""The trust rule: inside a file scope create_model builds only what a file may choose."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.errors import ConfigError
from edgekd.models import create_model
from edgekd.models.trust import (
    UntrustedFileError,
    modules_named,
    parse_trusted,
    reading_file,
    trust_model_names,
    trusted,
    trusted_code,
)

FACTORY = "module:tests.models.tiny_factory:build"


def test_outside_a_file_scope_the_caller_chose_the_name():
    assert create_model(FACTORY, 3, 2, hidden=4) is not None


def test_inside_a_file_scope_module_names_need_trust(tmp_path: Path):
    source = tmp_path / "x.pt"
    with reading_file(source), pytest.raises(UntrustedFileError) as info:
        create_model(FACTORY, 3, 2, hidden=4)
    line = info.value.one_line()
    assert f"checkpoint {source} names model {FACTORY!r}" in line
    assert "--trust-module tests.models.tiny_factory" in line and "\n" not in line
    # Built-in and timm names need no trust.
    with reading_file(source):
        create_model("cnn1d_small", 3, 2, width=4)
    # Trusting the whole module, or that very factory, lets it through; another factory is refused.
    for names in (["tests.models.tiny_factory"], ["tests.models.tiny_factory:build"]):
        with trusted_code(names), reading_file(source):
            create_model(FACTORY, 3, 2, hidden=4)
    with (
        trusted_code(["tests.models.tiny_factory:other"]),
        reading_file(source),
        pytest.raises(UntrustedFileError),
    ):
        create_model(FACTORY, 3, 2, hidden=4)
    # Trusting a parent package does not trust its modules.
    with trusted_code(["tests.models"]), reading_file(source), pytest.raises(UntrustedFileError):
        create_model(FACTORY, 3, 2, hidden=4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pretrained_path": "/etc/passwd"},
        {"checkpoint_path": "w.pth"},
        {"pretrained_cfg_overlay": {"file": "w.pth"}},
        {"cache_dir": "/tmp"},
        {"hf_hub_id": "org/model"},
        {"weightsFile": "w.bin"},
        {"members": [{"model": "cnn1d_small", "kwargs": {"pretrained_path": "w.pt"}}]},
    ],
)
def test_a_file_may_not_name_a_path(tmp_path: Path, kwargs: dict):
    with reading_file(tmp_path / "x.pt"), pytest.raises(UntrustedFileError, match="may not choose a file"):
        create_model("cnn1d_small", 3, 2, **kwargs)


def test_unset_path_arguments_and_stochastic_depth_are_fine(tmp_path: Path):
    with (
        reading_file(tmp_path / "x.pt"),
        pytest.raises(ConfigError, match="has no argument 'drop_path_rate'"),
    ):
        # Passed the trust check (drop_path is stochastic depth), refused by the model itself.
        create_model("cnn1d_small", 3, 2, drop_path_rate=0.1, pretrained_path=None)


def test_scopes_end_with_their_block(tmp_path: Path):
    before = trusted()
    with trusted_code(["a.b"]):
        assert "a.b" in trusted()
        with trusted_code(["c"], replace=True):
            assert trusted() == {"c"}
        assert "a.b" in trusted()
    assert trusted() == before
    with trusted_code([], replace=True):
        trust_model_names([("module:x.y:build", {}), ("cnn1d_small", {})])
        assert trusted() == {"x.y:build"}
    assert trusted() == before


def test_module_names_of_a_recipe_include_ensemble_members():
    kwargs = {
        "members": [
            {"model": "module:a.b:f"},
            {"model": "ensemble", "kwargs": {"members": [{"model": "module:c:g"}, {"model": "resnet1d"}]}},
            {"model": "module:not valid:f"},
        ]
    }
    assert modules_named("ensemble", kwargs) == {"a.b:f", "c:g"}
    assert modules_named("module:pkg.mod:build") == {"pkg.mod:build"}
    assert modules_named("timm:resnet18") == set()


def test_trust_names_are_validated():
    assert parse_trusted(["a.b", "c,d.e:f"]) == {"a.b", "c", "d.e:f"}
    for bad in ("a..b", "1abc", "a.b:", "a.b:c:d", "os;rm", "../evil"):
        with pytest.raises(ConfigError, match="is not a Python module name"):
            parse_trusted([bad])
