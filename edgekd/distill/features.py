"""Intermediate features taken by module path with forward hooks.

The user's network is never edited: ``FeatureTaps`` registers a forward hook on each named
submodule (``dict(model.named_modules())``), stores the latest output per path and removes
the hooks on ``remove()``/exit. A path that does not exist fails with a did-you-mean and
the valid paths.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError

_LISTED = 40  # module paths named in an error before "... and N more"


def valid_paths(model: nn.Module) -> list[str]:
    """Every submodule path of ``model`` (as ``named_modules`` spells them), root excluded."""
    return [name for name, _ in model.named_modules() if name]


def resolve_module(model: nn.Module, path: str, what: str = "model") -> nn.Module:
    """The submodule at ``path`` (e.g. ``"stages.1"``), or ConfigError listing valid paths."""
    modules = dict(model.named_modules())
    if path and path in modules:
        return modules[path]
    names = valid_paths(model)
    close = difflib.get_close_matches(path, names, n=1)
    shown = ", ".join(names[:_LISTED]) + (
        f" ... and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    )
    hint = (f"did you mean {close[0]!r}? " if close else "") + f"valid {what} paths: {shown or 'none'}"
    raise ConfigError(f"{what} has no module {path!r}", hint=hint)


def _first_tensor(output: Any, path: str) -> torch.Tensor:
    # Blocks may return tuples (attention weights, caches); the first tensor is the feature.
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise ConfigError(
        f"tapped module {path!r} returned {type(output).__name__}, not a tensor",
        hint="tap a module whose output is a tensor (or a tuple that starts with one)",
    )


class FeatureTaps:
    """Forward hooks that record the outputs of ``paths`` on every forward of ``model``.

    >>> with FeatureTaps(model, ["stages.1", "stages.2"]) as taps:
    ...     logits = model(x)
    ...     feats = taps.collect()  # [out of stages.1, out of stages.2]

    ``detach=True`` (for the frozen teacher) keeps no autograd graph. A module called several
    times in one forward pass records its last output.
    """

    def __init__(
        self, model: nn.Module, paths: str | Iterable[str], what: str = "model", detach: bool = False
    ):
        # One path is one path, not the characters of a string.
        self.paths = list(dict.fromkeys([paths] if isinstance(paths, str) else paths))  # unique, in order
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        modules = [resolve_module(model, p, what) for p in self.paths]  # fail before hooking any
        for path, module in zip(self.paths, modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(path, detach)))

    def _hook(self, path: str, detach: bool):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output, path)
            self.outputs[path] = tensor.detach() if detach else tensor

        return hook

    def collect(self, paths: Iterable[str] | None = None) -> list[torch.Tensor]:
        """The recorded outputs of ``paths`` (default: all, in order); clears the record."""
        wanted = self.paths if paths is None else list(paths)
        missing = [p for p in wanted if p not in self.outputs]
        if missing:
            raise ConfigError(
                f"tapped modules {missing} did not run in the forward pass",
                hint="tap modules that the model's forward actually calls",
            )
        result = [self.outputs[p] for p in wanted]
        self.outputs = {}
        return result

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.outputs = {}

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
