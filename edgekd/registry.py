"""One generic registry for every extension point (models, losses, backends...)."""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgekd.errors import ConfigError

T = TypeVar("T")


def _origin(obj: object) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
    except (TypeError, OSError):
        return repr(obj)


class Registry(Generic[T]):
    """Name -> object table that is loud on collisions and helpful on typos.

    >>> LOSSES: Registry[Callable] = Registry("loss")
    >>> @LOSSES.register("kd")
    ... def kd(...): ...
    >>> LOSSES.get("kd")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                warnings.warn(
                    f"{self.kind} {name!r} registered twice: {_origin(self._items[name])} "
                    f"is replaced by {_origin(item)}",
                    stacklevel=3,
                )
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        """Return the entry or raise ConfigError naming the closest known names."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}",
                hint=suggestion(name, self.names(), f"known {_plural(self.kind)}"),
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

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
