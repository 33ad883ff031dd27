"""create_model: one entry point for every source of a network.

Names (the part before the first ``:`` picks the source):

* ``resnet1d`` or ``edgekd:resnet1d`` — the built-in zoo, listed by ``MODELS.names()``.
* ``module:pkg.mod:factory`` — imports ``pkg.mod`` and calls ``factory(num_classes,
  in_channels, **kwargs)``. Importing code named by the user is an explicit choice made
  on the command line or in a recipe, the same trust as ``python -m pkg.mod``.
* ``timm:NAME`` — ``timm.create_model(NAME, ...)`` when timm is installed (imported only then).
  ``NAME`` may carry a pretrained tag (``convnextv2_large.fcmae_ft_in22k_in1k``) or be a hub
  model (``hf-hub:org/name``). ``pretrained: true`` starts from timm's ImageNet weights: from the
  hub cache, else downloaded and cached by timm, else one line (exit 2) pointing to
  ``pretrained_path`` or the hub cache; ``pretrained: auto`` falls back to random weights with a
  warning. See :mod:`edgekd.models.timm_models`.

Built-in networks register themselves in :data:`edgekd.models.registry.MODELS` when their
module is imported; importing this module imports the zoo, so every built-in name resolves.
``ensemble`` is built here (:func:`build_ensemble`): its members are models this factory makes.

Any model takes ``pretrained_path=FILE``: initial weights from a local state_dict (``.pth``/
``.pt``/``.bin`` read with ``torch.load(weights_only=True)``, or ``.safetensors``), e.g. a timm
ImageNet file or the ``.pt`` of an earlier edgekd run. See :func:`edgekd.models.weights.
load_pretrained_weights` for the rules (a classifier of another class count is re-initialised).
It wins over ``pretrained``: the hub is not asked for weights it would replace. Built-in
networks have no hub weights: ``pretrained: true`` is refused, ``auto`` warns, ``false`` is
dropped; a ``module:`` factory receives ``pretrained`` as its own argument.

Trust rule: a value read from a file never chooses code to run nor a path to read. Names
that come from a file (a checkpoint's ``model_name``, an ensemble checkpoint's members) may
only be built-in and ``timm:`` names; a ``module:`` name there is built only when the person
running edgekd trusts its module: by naming it in their recipe, or with
``edgekd --trust-module pkg.mod CMD ...`` (``EDGEKD_TRUST_MODULE``). Model arguments from a
file that name a file, folder or URL (``pretrained_path``, timm's ``checkpoint_path``, ...)
are refused, and a file's ``pretrained: true`` is ignored: the network is built with random
weights (the hub is never asked) and the file's own weights are loaded. See
:mod:`edgekd.models.trust`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from edgekd.errors import ConfigError, RuntimeUnavailable
from edgekd.models import zoo1d, zoo_attention
from edgekd.models.ensemble import TeacherEnsemble, check_member_count, member_spec
from edgekd.models.registry import MODELS, ModelFactory
from edgekd.models.timm_hub import PretrainedUnavailable
from edgekd.models.timm_models import create_timm_model, pretrained_mode, warn_random_start
from edgekd.models.trust import check_model_request, reading_a_file
from edgekd.models.weights import load_pretrained_weights
from edgekd.registry import suggestion

# The modules whose classes register themselves in MODELS on import (named, so the import is kept).
BUILT_IN = (zoo1d, zoo_attention)
_SOURCES = ("edgekd", "module", "timm")


def create_model(name: str, num_classes: int, in_channels: int = 2, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised network mapping [N, in_channels, ...] -> [N, num_classes].

    Args:
        name: ``"resnet1d"``, ``"edgekd:resnet1d"``, ``"module:pkg.mod:factory"`` or ``"timm:NAME"``.
        num_classes: number of output logits.
        in_channels: input channels (2 for IQ frames, 3 for RGB images).
        **kwargs: model-specific settings, e.g. ``width=48`` for ``resnet1d``;
            ``pretrained_path`` (any model): a local weights file to start from, which wins over
            ``pretrained`` (``timm:`` models): ``true``, ``false`` or ``"auto"``.

    Raises:
        ConfigError: unknown name (with "did you mean"), unknown or bad argument, weights
            that do not fit the architecture.
        InputFileError: a ``pretrained_path`` that is missing or not a weights file.
        UntrustedFileError: while a file is read (:func:`edgekd.models.trust.reading_file`),
            a ``module:`` name whose module is not trusted, or an argument naming a path.
        RuntimeUnavailable: ``timm:`` names where timm is not installed.
        PretrainedUnavailable: ``pretrained: true`` (``timm:`` models) where the weights cannot
            be had: offline and not in the hub cache, a failed download, no weights in timm.

    >>> model = create_model("cnn1d_small", num_classes=11)
    >>> model(torch.zeros(4, 2, 128)).shape
    torch.Size([4, 11])
    """
    check_model_request(name, kwargs)  # before anything is imported or read
    pretrained_path = kwargs.pop("pretrained_path", None)
    model = _create_fresh(name, num_classes, in_channels, kwargs, weights_given=bool(pretrained_path))
    if not isinstance(model, nn.Module):  # whatever the source, callers get a network
        raise ConfigError(
            f"model {name!r}: the factory returned {type(model).__name__}, not a torch.nn.Module",
            hint="make the factory return the network",
        )
    if pretrained_path:
        load_pretrained_weights(model, pretrained_path, name)
    return model


@MODELS.register("ensemble")
def build_ensemble(num_classes: int, in_channels: int = 2, members: Sequence[Mapping] = ()) -> nn.Module:
    """The ``ensemble`` model: a :class:`TeacherEnsemble` of members written as model specs,
    ``[{model: resnet1d, kwargs: {...}}, {model: "timm:NAME"}]``, each built by :func:`create_model`
    (so a member read from a file obeys the same trust rule as the file's own model name)."""
    check_member_count(members)  # before any member is built
    built = []
    for index, spec in enumerate(members):
        name, kwargs = member_spec(index, spec)
        built.append(create_model(name, num_classes, in_channels, **kwargs))
    return TeacherEnsemble(num_classes, in_channels, built)


def _create_fresh(
    name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any], *, weights_given: bool = False
) -> Any:
    source, sep, rest = name.partition(":")
    if not sep:
        source, rest = "edgekd", name
    if source == "edgekd":
        factory = MODELS.get(rest)  # an unknown name fails first, with "did you mean"
        _no_hub_weights(name, kwargs, weights_given=weights_given)
        return _build(name, factory, num_classes, in_channels, kwargs)
    if source == "module":  # ``pretrained`` is the factory's own argument, if it takes one
        factory = _import_factory(name, rest)
        if reading_a_file() and kwargs.get("pretrained"):
            kwargs["pretrained"] = False  # a file's flag never makes code download; its weights follow
        return _build(name, factory, num_classes, in_channels, kwargs)
    if source == "timm":
        return _create_timm(rest, num_classes, in_channels, kwargs, weights_given=weights_given)
    raise ConfigError(
        f"unknown model source {source!r} in model name {name!r}",
        hint=suggestion(source, list(_SOURCES), "sources (write SOURCE:NAME)"),
    )


def _no_hub_weights(name: str, kwargs: dict[str, Any], *, weights_given: bool) -> None:
    """Built-in networks have no hub weights: ``pretrained: true`` is an error, ``auto`` says so
    once and goes on, ``false`` is dropped (a recipe may switch kd-oct's timm teacher for one)."""
    if "pretrained" not in kwargs:
        return
    mode = pretrained_mode(name, kwargs.pop("pretrained"))
    if weights_given or reading_a_file() or mode == "off":
        return
    message = f"model {name!r}: edgekd's built-in networks have no pretrained weights"
    if mode == "on":
        raise PretrainedUnavailable(
            message, hint="set pretrained_path: FILE (e.g. the .pt of an earlier run), or pretrained: auto"
        )
    warn_random_start(name, message)


def _import_factory(name: str, target: str) -> ModelFactory:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"model name {name!r} is not module:pkg.mod:factory", hint="e.g. module:mypkg.nets:build"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model {name!r}: cannot import {module_name!r}: {exc}",
            hint="install the package or put it on PYTHONPATH",
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ConfigError(
            f"model {name!r}: {module_name} has no callable {attr!r}",
            hint=suggestion(attr, public, f"callables in {module_name}"),
        )
    return factory


def _check_arguments(name: str, factory: ModelFactory, kwargs: dict[str, Any]) -> None:
    """Name the first argument the factory does not take, before calling it."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    kinds = inspect.Parameter
    positional = [
        p.name for p in params.values() if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    # The first two positional slots receive num_classes and in_channels.
    accepted = [
        p.name
        for p in params.values()
        if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) and p.name not in positional[:2]
    ]
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"model {name!r} has no argument {key!r}",
                hint=suggestion(key, accepted, f"arguments of {name}")
                if accepted
                else f"{name} takes no extra arguments; remove {key!r}",
            )


def _build(
    name: str, factory: ModelFactory, num_classes: int, in_channels: int, kwargs: dict[str, Any]
) -> Any:
    _check_arguments(name, factory, kwargs)
    try:
        # Positional: user factories may call the second argument in_chans, channels, ...
        model = factory(num_classes, in_channels, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"model {name!r} cannot be built with {kwargs or 'its defaults'}: {exc}",
            hint="check the model arguments in the config",
        ) from None
    return model


def _create_timm(
    name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any], *, weights_given: bool
) -> nn.Module:
    if importlib.util.find_spec("timm") is None:
        raise RuntimeUnavailable(
            f"model 'timm:{name}' needs timm, which is not installed here",
            hint="pip install 'edgekd[vision]', or use an edgekd:NAME or module:pkg.mod:factory model",
        )
    kwargs = dict(kwargs)
    mode = pretrained_mode(f"timm:{name}", kwargs.pop("pretrained", None))
    from_file = reading_a_file()
    if weights_given or from_file:
        # pretrained_path's weights replace the hub's; a file's weights are loaded after the build.
        mode = "off"
    return create_timm_model(name, num_classes, in_channels, kwargs, pretrained=mode, cache_only=from_file)
