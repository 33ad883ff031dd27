from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from edgekd.config import MAX_CONFIG_BYTES, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
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


# --- hostile and broken config files: one ConfigError naming the file, never a crash ---

DEEP_BLOCK = "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n"
BROKEN_FILES = [
    ("empty", b"", "holds no settings"),
    ("comments", b"# only a comment\n\n", "holds no settings"),
    ("null", b"null\n", "holds no settings"),
    ("empty-mapping", b"{}\n", "holds no settings"),
    (
        "duplicate",
        b"name: a\nepochs: 3\nname: b\n",
        "line 3, column 1: duplicate key 'name' (first given at line 1)",
    ),
    (
        "nested-duplicate",
        b"inner:\n  lr: 1\n  mode: a\n  lr: 2\n",
        "duplicate key 'inner.lr' (first given at line 2)",
    ),
    ("duplicate-in-list", b"tags:\n  - {a: 1, a: 2}\n", "duplicate key 'tags[0].a'"),
    ("same-value-keys", b"yes: 1\ntrue: 2\n", "duplicate key"),
    ("merge-inline", b"inner:\n  <<: {epochs: 1}\n  epochs: 2\n", "merge keys (<<) are not allowed"),
    ("merge-alias", b"a: &x {epochs: 1}\ninner:\n  <<: *x\n", "alias *x is not allowed"),
    (
        "billion-laughs",
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
        "alias",
    ),
    ("deep-flow", b"a: " + b"[" * 20000 + b"]" * 20000 + b"\n", "nested deeper than 64 levels"),
    ("deep-block", DEEP_BLOCK.encode(), "nested deeper than 64 levels"),
    ("huge", b"name: " + b"x" * (MAX_CONFIG_BYTES + 10) + b"\n", "larger than"),
    ("utf16", "name: x\n".encode("utf-16"), "UTF-16"),
    ("latin1", "name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at line 1)"),
    ("binary", bytes(range(256)), "binary, not YAML text"),
    ("control-char", b"name: x\ntags: [\x07]\n", "line 2, column 8: control character #x0007"),
    ("tab-indent", b"inner:\n\tepochs: 1\n", "line 2, column 1"),
    ("not-a-mapping", b"- 1\n- 2\n", "must hold a YAML mapping"),
    ("two-documents", b"name: a\n---\nname: b\n", "single document"),
    ("python-tag", b"name: !!python/object/apply:os.system ['true']\n", "constructor for the tag"),
    ("set-tag", b"tags: !!set {a, b}\n", "!!set values are not allowed"),
    ("binary-tag", b"name: !!binary aGVsbG8=\n", "!!binary values are not allowed"),
    ("long-integer", b"epochs: " + b"9" * 5000 + b"\n", "integer too long"),
]


@pytest.mark.parametrize(("stem", "content", "fragment"), BROKEN_FILES, ids=[c[0] for c in BROKEN_FILES])
def test_broken_config_files_are_one_line_errors_naming_the_file(tmp_path, stem, content, fragment):
    path = tmp_path / f"{stem}.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    line = err.value.one_line()
    assert str(path) in line and fragment in line, line
    assert "\n" not in line and len(line) < 400


def test_empty_file_is_accepted_only_when_the_caller_says_so(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert load_yaml(path, allow_empty=True) == {}


def test_byte_order_mark_and_dates_load_as_plain_data(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: 2024-01-01\ninner: {epochs: 2}\n")
    data = load_yaml(path)
    assert data == {"name": "2024-01-01", "inner": {"epochs": 2}}
    assert from_dict(Outer, data).name == "2024-01-01"


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        load_yaml(tmp_path)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"inner": {"lr": float("nan")}}, "inner.lr must be a finite number"),
        ({"inner": {"lr": float("-inf")}}, "inner.lr must be a finite number"),
        ({"inner": {"lr": "nan"}}, "inner.lr must be a finite number"),
        ({"inner": {"lr": 10**400}}, "inner.lr must be a finite number"),
        ({"inner": {"epochs": 2**63}}, "inner.epochs is out of range"),
        ({"name": 10**5000}, "name must be a string"),
    ],
)
def test_numbers_must_be_finite_and_in_range(data, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    assert fragment in err.value.one_line() and len(err.value.one_line()) < 200


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("epochs", "not KEY=VALUE"),
        ("=3", "empty or blank part"),
        ("inner..epochs=3", "empty or blank part"),
        ("name.x=3", "'name' is a value, not a section"),
        ("tags=[*a]", "alias *a is not allowed"),
        ("inner={lr: 1, lr: 2}", "duplicate key 'lr'"),
        ("tags=" + "[" * 100 + "]" * 100, "nested deeper"),
    ],
)
def test_malformed_overrides_are_one_line(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides({"name": "x", "inner": None}, [override])
    line = err.value.one_line()
    assert fragment in line and "\n" not in line and len(line) < 300, line


def test_override_fills_a_null_section_and_keeps_non_yaml_text():
    data = apply_overrides({"inner": None}, ["inner.epochs=4", "name=a: [b"])
    assert data == {"inner": {"epochs": 4}, "name": "a: [b"}


@pytest.mark.parametrize("command", ["run", "targets"])
def test_cli_refuses_empty_and_duplicated_files_with_exit_2(tmp_path, command):
    from click.testing import CliRunner

    from edgekd.cli.main import cli

    for name, text, fragment in [
        ("empty.yaml", "# all defaults?\n", "holds no settings"),
        ("dup.yaml", "name: a\nname: b\n", "duplicate key 'name'"),
        ("deep.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        args = [command, str(path)] + (["--out", str(tmp_path / "out")] if command == "run" else [])
        result = CliRunner().invoke(cli, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], result.output
        assert not (tmp_path / "out").exists()
