"""Whose choice is the code a model name runs: the person running edgekd, never a file.

A ``module:pkg.mod:factory`` model name imports ``pkg.mod`` and calls ``factory``. Written by
the person running edgekd (in their recipe, or a ``--set`` override) that is their choice, the
same trust as ``python -m pkg.mod``. Read back from a file (a checkpoint's ``model_name``, the
member list of an ensemble checkpoint) it would let whoever wrote the file run code, and
``torch.load(weights_only=True)`` does not stop that: the name is plain data. Likewise a
``pretrained_path`` stored in a file would make edgekd read a file of the file's choosing.

* :func:`reading_file` marks the networks built while a file is read: ``load_checkpoint`` wraps
  its ``create_model`` call in it, so the members an ``ensemble`` builds obey it too.
  Inside it :func:`check_model_request` (called first by ``create_model``) admits built-in
  (``edgekd:``) and ``timm:`` names, and a ``module:`` name only when its module (or that very
  ``pkg.mod:factory``) is trusted; a model argument that names a file, folder or URL
  (``pretrained_path``, timm's ``checkpoint_path``, ...) is refused whatever the source, and so
  is a ``timm:local-dir:FOLDER`` name. ``pretrained: true/false/auto`` is a flag, not a path: it
  is admitted and the factory ignores it (:func:`reading_a_file`), so a file never makes edgekd
  download weights; a ``timm:hf-hub:`` model read from a file is built from the hub cache only.
* Trust comes from the person: ``edgekd --trust-module pkg.mod CMD ...`` (or
  ``EDGEKD_TRUST_MODULE``) for one command, and the model names of a recipe (teacher, student
  and the ensemble members in their kwargs) once it is loaded (:func:`trust_model_names`).

Outside :func:`reading_file` nothing is checked: code that calls ``create_model`` chose the
name itself. This module imports nothing heavy (the CLI root uses it before any command).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError, InputFileError

# "pkg.mod" (the whole module) or "pkg.mod:factory" (one factory), as the person wrote them.
_TRUSTED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "edgekd_trusted_code", default=frozenset()
)


@dataclasses.dataclass(frozen=True)
class _Source:
    what: str  # "checkpoint", "ensemble member list", ...
    path: Path


_SOURCE: contextvars.ContextVar[_Source | None] = contextvars.ContextVar("edgekd_model_source", default=None)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Words of a model argument's name that say its value is something to read: a file, a folder,
# a URL or hub id, downloaded weights. ``drop_path`` (stochastic depth) is no such thing.
_PATH_WORDS = frozenset(
    {
        "path", "paths", "file", "files", "filename", "filenames", "dir", "dirs", "directory",
        "folder", "url", "urls", "uri", "hub", "checkpoint", "pretrained", "location", "root",
    }
)  # fmt: skip


class UntrustedFileError(InputFileError):
    """A file asked edgekd to run code or read a path it names: refused, exit 2."""


def parse_trusted(values: Iterable[str], where: str = "--trust-module") -> frozenset[str]:
    """Validate ``pkg.mod`` / ``pkg.mod:factory`` names (commas also separate them).

    Raises:
        ConfigError: a name that is not a dotted Python module path.
    """
    names: set[str] = set()
    for value in values:
        for item in str(value).replace(",", " ").split():
            module, colon, attr = item.partition(":")
            if not _DOTTED.fullmatch(module) or (colon and not attr.isidentifier()):
                raise ConfigError(
                    f"{where} {item!r} is not a Python module name",
                    hint="write the module a model factory lives in, e.g. --trust-module mypkg.nets",
                )
            names.add(item)
    return frozenset(names)


def trusted() -> frozenset[str]:
    """The module and factory names trusted here and now."""
    return _TRUSTED.get()


@contextlib.contextmanager
def trusted_code(names: Iterable[str], *, replace: bool = False) -> Iterator[frozenset[str]]:
    """Trust ``names`` (``pkg.mod`` or ``pkg.mod:factory``) inside the block; ``replace``: only them.

    The CLI root opens one with ``replace=True`` per command, so nothing trusted by one
    command (or by earlier code in the same process) carries over to the next.
    """
    wanted = parse_trusted(names)
    token = _TRUSTED.set(wanted if replace else _TRUSTED.get() | wanted)
    try:
        yield _TRUSTED.get()
    finally:
        _TRUSTED.reset(token)


def trust_model_names(models: Iterable[tuple[str, Any]]) -> None:
    """Trust the ``module:`` factories named by ``(model name, kwargs)`` pairs a person wrote
    (a recipe's teacher and student), ensemble members in the kwargs included.

    Lasts for the rest of the current context: within one CLI command, that command.
    """
    found: set[str] = set()
    for name, kwargs in models:
        found |= modules_named(name, kwargs)
    if found - _TRUSTED.get():
        _TRUSTED.set(_TRUSTED.get() | found)


def modules_named(name: str, kwargs: Any = None) -> set[str]:
    """The ``pkg.mod:factory`` targets that building ``name`` would import, ensemble members included."""
    found: set[str] = set()
    source, sep, target = str(name).partition(":")
    module, colon, attr = target.rpartition(":")
    if sep and source == "module" and colon and _DOTTED.fullmatch(module) and attr.isidentifier():
        found.add(target)  # a malformed name imports nothing; create_model reports it
    members = kwargs.get("members") if isinstance(kwargs, Mapping) else None
    if isinstance(members, (list, tuple)):
        for member in members:
            if isinstance(member, Mapping) and isinstance(member.get("model"), str):
                found |= modules_named(member["model"], member.get("kwargs"))
    return found


@contextlib.contextmanager
def reading_file(path: str | os.PathLike[str], what: str = "checkpoint") -> Iterator[None]:
    """Networks built inside the block are named by ``path`` (a ``what``), not by the person."""
    token = _SOURCE.set(_Source(what, Path(path)))
    try:
        yield
    finally:
        _SOURCE.reset(token)


def reading_a_file() -> bool:
    """True inside :func:`reading_file`: the network being built is named by a file, so the
    factory builds it with random weights and never asks the network (the file's weights follow)."""
    return _SOURCE.get() is not None


def check_model_request(name: str, kwargs: Mapping[str, Any]) -> None:
    """Inside :func:`reading_file`, refuse a model name or argument a file may not choose.

    Raises:
        UntrustedFileError: an untrusted ``module:`` name, or an argument naming a path.
    """
    source = _SOURCE.get()
    if source is None:
        return
    kind, sep, target = str(name).partition(":")
    if sep and kind == "timm" and target.partition(":")[0].lower() == "local-dir":
        raise UntrustedFileError(
            f"{source.what} {source.path} names model {name!r}, a folder to read weights from; "
            "a file may not choose a folder for edgekd to read",
            hint="name the model timm:ARCH with pretrained_path: FOLDER/model.safetensors in your "
            "recipe instead: its checkpoints then rebuild without the folder",
        )
    if sep and kind == "module":
        module = target.rpartition(":")[0] or target
        allowed = _TRUSTED.get()
        if module not in allowed and target not in allowed:
            raise UntrustedFileError(
                f"{source.what} {source.path} names model {name!r}, which would import and run "
                f"code from {module!r}; a file may not choose code to run",
                hint=f"if you trust {module}, run: edgekd --trust-module {module} COMMAND ...; "
                "or rebuild the model from a recipe that names it",
            )
    found = _path_argument(kwargs)
    if found is not None:
        key, value = found
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise UntrustedFileError(
            f"{source.what} {source.path} sets model argument {key!r} to {shown}; a file may not "
            "choose a file, folder or URL for edgekd to read",
            hint="edgekd never stores such arguments in what it writes: set it in your recipe's "
            "kwargs, or re-save the checkpoint with edgekd",
        )


def _words(key: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_")
    return snake.replace("drop_path", "droppath").split("_")


def _path_argument(value: Any, where: str = "", depth: int = 0) -> tuple[str, Any] | None:
    """The first ``(dotted key, value)`` whose key names a path and whose value is set, at any depth."""
    if depth > 64:  # deeper than any model's arguments: refused as a whole
        return where, "<nested too deep>"
    if isinstance(value, Mapping):
        for key, item in value.items():
            dotted = f"{where}.{key}" if where else str(key)
            if key == "pretrained" and (item is True or str(item).strip().lower() == "auto"):
                continue  # a flag the factory ignores while a file is read, not a location
            if item and any(word in _PATH_WORDS for word in _words(str(key))):
                return dotted, item
            found = _path_argument(item, dotted, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _path_argument(item, f"{where}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


__all__ = [
    "UntrustedFileError",
    "check_model_request",
    "modules_named",
    "parse_trusted",
    "reading_a_file",
    "reading_file",
    "trust_model_names",
    "trusted",
    "trusted_code",
]
