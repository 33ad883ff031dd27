from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from edgekd.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from edgekd.errors import ConfigError


@dataclasses.dataclass
class Inner:
    epochs: int = 3
    lr: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclasses.dataclass
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    tags: list[str] = dataclasses.field(default_factory=list)
    limit: float | None = None


def test_from_dict_builds_nested_and_converts_ints_to_floats():
    cfg = from_dict(Outer, {"name": "n", "inner": {"epochs": 5, "lr": 1}, "tags": ["a"], "limit": 2})
    assert cfg.inner.epochs == 5 and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.tags == ["a"] and cfg.limit == 2.0


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"inner": {"epoch": 5}})
    assert "inner.epoch" in err.value.message
    assert "did you mean 'epochs'" in err.value.one_line()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"inner": {"epochs": "many"}}, "inner.epochs must be an integer"),
        ({"inner": {"epochs": True}}, "inner.epochs must be an integer"),
        ({"inner": {"mode": "c"}}, "inner.mode must be one of"),
        ({"tags": "a"}, "tags must be a list"),
        ({"inner": 3}, "inner must be a mapping"),
    ],
)
def test_wrong_types_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    assert fragment in err.value.message


def test_overrides_parse_yaml_scalars_and_create_sections():
    data = apply_overrides({"inner": {"epochs": 1}}, ["inner.epochs=4", "inner.lr=1e-3", "name=run 1"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.epochs == 4 and cfg.inner.lr == pytest.approx(1e-3) and cfg.name == "run 1"
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        apply_overrides({}, ["epochs"])


def test_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(bad)
    assert "not valid YAML" in err.value.message and "line" in err.value.message
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(listing)


def test_yaml_is_data_never_code(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_yaml(evil)


def test_round_trip_through_yaml():
    cfg = Outer(name="r", inner=Inner(epochs=7), tags=["t"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    assert "epochs: 7" in dump_yaml(cfg)
