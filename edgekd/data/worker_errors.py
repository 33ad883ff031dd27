"""A user's mistake found in a DataLoader worker stays the one-line error it was.

A DataLoader passes an exception from a worker to the main process as its type and its
formatted traceback only, and raises ``Type("Caught Type in DataLoader worker process 1.
Original Traceback ...")`` there: the line a user sees becomes a traceback, and an
:class:`~edgekd.errors.EdgeKDError`'s ``hint`` is lost. :class:`CarryErrors` wraps the dataset
a loader reads: in the worker, an EdgeKDError becomes a :class:`WorkerError` whose text is the
error as JSON (class, message, hint); :func:`carried_errors` turns it back into the error
itself in the main process. Only EdgeKDError subclasses already imported here are rebuilt,
chosen by name among them (the text never names code to import).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Dataset

from edgekd.errors import EdgeKDError


class WorkerError(Exception):
    """An EdgeKDError raised while a worker read samples; its text holds the error as JSON."""


class CarryErrors(Dataset):
    """``dataset`` (any map-style dataset with ``__getitems__``) whose EdgeKDErrors cross the
    worker boundary intact (see the module doc). Keys and samples pass through unchanged."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: Sequence[Any]) -> list[Any]:
        try:
            return self.dataset.__getitems__(keys)
        except EdgeKDError as exc:
            kind = type(exc)
            payload = {"module": kind.__module__, "kind": kind.__qualname__}
            payload.update(message=exc.message, hint=exc.hint)
            raise WorkerError(json.dumps(payload)) from None

    def __getitem__(self, key: Any) -> Any:
        return self.__getitems__([key])[0]


def _error_classes(base: type = EdgeKDError) -> Iterator[type]:
    yield base
    for sub in base.__subclasses__():
        yield from _error_classes(sub)


def rebuild(exc: WorkerError) -> EdgeKDError:
    """The EdgeKDError a :class:`WorkerError` carries (its class, message and hint)."""
    text = str(exc).rstrip().splitlines()[-1] if str(exc).strip() else ""
    try:
        payload = json.loads(text[text.index("{") :])
        module, kind, message, hint = (payload[k] for k in ("module", "kind", "message", "hint"))
    except (ValueError, KeyError, TypeError):
        return EdgeKDError(f"a DataLoader worker failed: {text}")
    known = (c for c in _error_classes() if c.__module__ == module and c.__qualname__ == kind)
    cls = next(known, EdgeKDError)
    try:
        return cls(message, hint=hint)
    except TypeError:  # a subclass with another signature: keep the words, lose the class
        return EdgeKDError(message, hint=hint)


@contextlib.contextmanager
def carried_errors() -> Iterator[None]:
    """Re-raise a :class:`WorkerError` from a loader over :class:`CarryErrors` as the error it carries."""
    try:
        yield
    except WorkerError as exc:
        raise rebuild(exc) from None
