"""Typed configuration: YAML (safe_load only) -> dataclasses, strictly.

Any dataclass with defaults can be a config section. ``from_dict`` walks the
type hints, so an unknown key fails with "did you mean", a wrong type names the
key path and the expected type, and ``--set a.b=c`` overrides are parsed as YAML
scalars. Configs are data: nothing in them is imported or executed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgekd.errors import ConfigError
from edgekd.registry import suggestion

T = TypeVar("T")


#: Largest config file read (recipes, targets, calibration recipes are a few KiB).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings and lists in a config (recipes use about 5 levels).
MAX_CONFIG_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _RuleError(yaml.MarkedYAMLError):
    """Valid YAML that an edgekd config may not use; ``hint`` says what to write instead."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` narrowed to what a config needs: plain scalars, lists and mappings.

    Refused, each as a ``yaml.MarkedYAMLError`` with the position: aliases (``*name``: a
    "billion laughs" file expands them exponentially, and a shared node edited by one
    ``--set`` would change every place that names it), merge keys (``<<``: they let a key be
    given twice), nesting deeper than ``MAX_CONFIG_DEPTH`` (PyYAML composes recursively),
    duplicate keys at any level, and the ``!!binary``/``!!set``/``!!omap``/``!!pairs`` types.
    Timestamps stay strings (``2024-01-01`` is a name in a config, not a date object).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _RuleError(
                f"alias *{event.anchor} is not allowed in an edgekd config",
                event.start_mark,
                "write the values out instead of an anchor and alias",
            )
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _RuleError(
                    f"nested deeper than {MAX_CONFIG_DEPTH} levels",
                    self.peek_event().start_mark,
                    "a config nests a few levels of sections; check the file",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check_keys(node, "")
        return self.construct_document(node)

    def _check_keys(self, node: yaml.Node, path: str) -> None:
        """Refuse merge keys and duplicate keys in every mapping below ``node``."""
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_keys(item, f"{path}[{i}]")
            return
        if not isinstance(node, yaml.MappingNode):
            return
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _RuleError(
                    "merge keys (<<) are not allowed in an edgekd config",
                    key_node.start_mark,
                    "write the merged keys out",
                )
            key = self._key_of(key_node)
            name = f"{path}.{key}" if path else str(key)
            if key is not None and key in seen:
                first = seen[key].start_mark.line + 1
                raise _RuleError(
                    f"duplicate key {_short(name)} (first given at line {first})",
                    key_node.start_mark,
                    "keep one of the two",
                )
            if key is not None:
                seen[key] = key_node
            self._check_keys(value_node, name)

    def _key_of(self, key_node: yaml.Node) -> Any:
        # Keys compare as the values they load as: "1" and "1.0", "yes" and "true" collide.
        if not isinstance(key_node, yaml.ScalarNode):
            return None  # a list or mapping as a key: the constructor refuses it (unhashable)
        key = self.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            return None
        return key


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    kind = node.tag.rsplit(":", 1)[-1]
    raise _RuleError(
        f"!!{kind} values are not allowed in an edgekd config",
        node.start_mark,
        "use plain lists and mappings",
    )


for _tag in ("binary", "set", "omap", "pairs"):
    _ConfigLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)
_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)


def parse_yaml(text: str) -> Any:
    """One YAML document with the config loader's rules; raises ``yaml.YAMLError``."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    """The file as text: size-capped, not binary, UTF-8 (a UTF-8 byte-order mark is dropped)."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist", hint="check the path")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file", hint="give the path of a YAML file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few KiB",
            hint="check that this is the YAML file you meant",
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"config file {path} is UTF-16 text", hint="save it as UTF-8")
    if b"\x00" in raw:
        raise ConfigError(f"config file {path} is binary, not YAML text", hint="give the path of a YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line})",
            hint="save it as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    """One line naming the file, the position and what PyYAML found."""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: a position, no mark
        lines = text[: exc.position].split("\n")
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        return ConfigError(
            f"{path} is not valid YAML at line {len(lines)}, column {len(lines[-1]) + 1}: "
            f"control character #x{code:04x} is not allowed",
            hint="remove the control character",
        )
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if isinstance(exc, _RuleError):
        return ConfigError(f"{path}{where}: {exc.problem}", hint=exc.hint)
    context, problem = getattr(exc, "context", None), getattr(exc, "problem", None)
    detail = ", ".join(p for p in (context, problem) if p) or str(exc).splitlines()[0]
    if "'\\t'" in detail:
        hint = "indent with spaces, not tabs"
    elif "constructor for the tag" in detail:
        hint = "remove the tag: a config holds plain values, lists and mappings"
    elif "single document" in detail:
        hint = "keep one document: remove the second ---"
    else:
        hint = "fix the YAML syntax"
    return ConfigError(f"{path} is not valid YAML{where}: {detail}", hint=hint)


def load_yaml(path: str | Path, *, allow_empty: bool = False) -> dict[str, Any]:
    """Read a config file: a YAML mapping, loaded by ``_ConfigLoader`` (safe_load's rules, narrowed).

    Every failure is a ConfigError that names the file (and the line and column where
    known): missing, not a file, over ``MAX_CONFIG_BYTES``, binary, not UTF-8, invalid YAML,
    deeper than ``MAX_CONFIG_DEPTH``, aliases, merge or duplicate keys, not a mapping. An
    empty document (no text, only comments, ``null`` or ``{}``) is refused too, since it
    would silently run the defaults, unless ``allow_empty`` (then it is ``{}``).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise _yaml_problem(path, text, exc) from None
    except RecursionError:  # a guard behind MAX_CONFIG_DEPTH, should the stack be smaller
        raise ConfigError(f"{path} is nested too deeply", hint="flatten the YAML") from None
    except ValueError:  # int() refuses more than 4300 digits (sys.get_int_max_str_digits)
        raise ConfigError(f"{path} holds an integer too long to read", hint="check the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a YAML mapping (key: value lines), not {_kind(data)}",
            hint="write the settings as key: value lines",
        )
    if not data and not allow_empty:
        raise ConfigError(
            f"config file {path} holds no settings (it is empty, only comments, null or {{}})",
            hint="write the settings into it, or give the file you meant",
        )
    return data


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, rejecting unknown keys."""
    where = path or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown config key {key_path!r}",
                hint=suggestion(str(key), sorted(fields), f"keys of {path or 'the top level'}"),
            )
        kwargs[key] = _convert(hints[key], value, key_path)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field was left out
        raise ConfigError(f"{where}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_INT_LIMIT = 2**63


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: a message stays one short line whatever the value."""
    if isinstance(value, int) and abs(value) >= 10**limit:  # repr of a huge int is slow, or refused
        return f"<{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors: list[ConfigError] = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # an optional section: its own error, "did you mean" included
            raise errors[0]
        raise ConfigError(f"{path}: {_short(value)} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{path} must be one of {', '.join(map(repr, args))}, got {_short(value)}",
                hint=suggestion(str(value), [str(a) for a in args], "choices"),
            )
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {_kind(value)}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {_kind(value)}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads "1e-3" as a string; accept what a person means.
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {_kind(value)} {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = math.inf
        if not math.isfinite(number):  # .nan, .inf, "nan", 1e999: no setting means that
            raise ConfigError(f"{path} must be a finite number, got {_short(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {_kind(value)} {_short(value)}")
        if abs(value) >= _INT_LIMIT:  # beyond int64: torch, numpy and C libraries overflow
            raise ConfigError(f"{path} is out of range: {_short(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {_short(value)}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path} must be a string, got {_kind(value)}")
        if isinstance(value, int) and abs(value) >= _INT_LIMIT:
            raise ConfigError(f"{path} must be a string, got a {value.bit_length()}-bit integer")
        return str(value)
    return value


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain data, ready for YAML/JSON (the resolved config)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a nested mapping, in place.

    A value that is not valid YAML stays the string typed (``name=a: b``); one that breaks
    the config rules (an alias, a duplicate key, deep nesting) or a malformed key is a
    one-line ConfigError naming the override. A null section becomes a mapping.
    """
    for item in overrides:
        key, value = _parse_override(item)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {_short(item)}: {part!r} is a value, not a section",
                    hint=f"set {part!r} itself, or a key of a section",
                )
            node = child
        node[parts[-1]] = value
    return data


def _parse_override(item: str) -> tuple[str, Any]:
    """(dotted key, value) of one ``KEY=VALUE`` override."""
    shown = _short(item)
    if "=" not in item:
        raise ConfigError(
            f"override {shown} is not KEY=VALUE", hint="write e.g. --set distill.train.epochs=3"
        )
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part.strip() or part != part.strip() for part in key.split(".")):
        raise ConfigError(
            f"override {shown} has an empty or blank part in its key {key!r}",
            hint="write e.g. --set distill.train.epochs=3",
        )
    if not raw.strip():
        return key, ""
    try:
        return key, parse_yaml(raw)
    except _RuleError as exc:
        raise ConfigError(f"override {shown}: {exc.problem}", hint=exc.hint) from None
    except (yaml.YAMLError, ValueError, RecursionError):
        return key, raw  # not YAML: the text itself, as a person typing it means


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
