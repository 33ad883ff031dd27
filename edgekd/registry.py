"""One generic registry for every extension point (models, losses, backends...)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from edgekd.errors import ConfigError

T = TypeVar("T")


def _origin(obj: object) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
    except (TypeError, OSError):
        return repr(obj)


def _same_definition(old: object, new: object) -> bool:
    """The same object, or one function/class defined again by re-running its module
    (``importlib.reload``, a notebook cell, a test run twice): same module and qualified name.
    Instances (a backend object) count only when identical: their class says nothing of
    where they were registered."""
    if old is new:
        return True
    if not all(inspect.isfunction(o) or inspect.isclass(o) for o in (old, new)):
        return False
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)  # type: ignore[attr-defined]


class Registry(Generic[T]):
    """Name -> object table that refuses collisions and is helpful on typos.

    >>> LOSSES: Registry[Callable] = Registry("logit loss")
    >>> @LOSSES.register("kd")
    ... def kd(...): ...
    >>> LOSSES.get("kd")

    Registries built with ``shares_names_with`` form one namespace: a name held by one of
    them is refused by all (logit and feature losses are looked up by one name in a recipe).
    """

    def __init__(self, kind: str, *, shares_names_with: Registry[Any] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        # Every registry of one namespace holds the same list object of its members.
        self._namespace: list[Registry[Any]] = (
            shares_names_with._namespace if shares_names_with is not None else []
        )
        self._namespace.append(self)

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        Raises ConfigError when ``name`` is taken in this registry's namespace by anything
        but the same definition (see ``_same_definition``), naming where both come from.
        """

        def add(item: T) -> T:
            self._refuse_collision(name, item)
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def _refuse_collision(self, name: str, item: object) -> None:
        for member in self._namespace:
            if name not in member._items:
                continue
            held = member._items[name]
            # member.kind, not member: a reloaded module's new registry meets its old twin.
            if member.kind == self.kind and _same_definition(held, item):
                return
            raise ConfigError(
                f"cannot register {self.kind} {name!r} from {_origin(item)}: the name is taken by "
                f"{member.kind} {name!r} from {_origin(held)}",
                hint="register it under another name",
            )

    def get(self, name: str) -> T:
        """Return the entry or raise ConfigError naming the closest known names."""
        try:
            return self._items[name]
        except KeyError:
            raise self._unknown(name) from None

    def unregister(self, name: str) -> T:
        """Remove and return the entry (a test's toy backend, say); ConfigError when unknown."""
        if name not in self._items:
            raise self._unknown(name)
        return self._items.pop(name)

    def _unknown(self, name: str) -> ConfigError:
        hint = suggestion(name, self.names(), f"known {_plural(self.kind)}")
        return ConfigError(f"unknown {self.kind} {name!r}", hint=hint)

    def names(self) -> list[str]:
        return sorted(self._items)

    def namespace_names(self) -> list[str]:
        """Every name held in this registry's namespace (its own and its siblings')."""
        return sorted({name for member in self._namespace for name in member._items})

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def suggestion(name: str, choices: list[str], what: str) -> str:
    """'did you mean X?' when something is close, else the list of choices."""
    close = difflib.get_close_matches(name, choices, n=1)
    listing = f"{what}: {', '.join(choices)}" if choices else f"no {what}"
    return f"did you mean {close[0]!r}? {listing}" if close else listing
