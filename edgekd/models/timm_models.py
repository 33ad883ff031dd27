"""``timm:NAME`` models, with ImageNet weights from the hub when asked for and when they can be had.

``NAME`` is what ``timm.create_model`` takes: a registry name (``convnextv2_large``), one with a
pretrained tag (``convnextv2_large.fcmae_ft_in22k_in1k``), a hub model (``hf-hub:org/name``,
optionally ``@revision``) or a local folder (``local-dir:/path``). The model argument
``pretrained`` picks the initial weights:

* ``false`` (or absent): random weights, as timm builds them. An ``hf-hub:`` model still needs
  its ``config.json`` from the hub (or the hub cache) to know its architecture.
* ``true``: timm's pretrained weights. A copy in the hub cache is used as it is (no network);
  otherwise timm downloads and caches them as it always does. Where they cannot be had
  (``HF_HUB_OFFLINE``, no connection, not in the cache, a failed download, a model timm has no
  weights for) the build stops with one line, exit 2 (:class:`PretrainedUnavailable`), naming
  the model and the way out: ``pretrained_path`` or the hub cache.
* ``auto``: as ``true`` where the weights can be had, else one warning line (logger
  ``edgekd.models``, once per model and process) and random weights.

``pretrained_path`` wins over ``pretrained`` (the factory turns ``pretrained`` off): the hub is
not asked for weights that would be overwritten. While a file is read
(:func:`edgekd.models.trust.reading_file`) ``pretrained`` is off and the hub is never asked:
the weights come from the file, and an ``hf-hub:`` model's config only from the hub cache.

timm's own download arguments (``checkpoint_path``, ``cache_dir``, ``pretrained_cfg``,
``pretrained_cfg_overlay``) name files, folders or URLs and are refused: the weights come from
the hub, the hub cache or ``pretrained_path``.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.timm_hub import (
    PretrainedUnavailable,
    WeightsSource,
    cache_label,
    cached_hub_model,
    cached_weights,
    hub_cache_dir,
    hub_endpoint,
    offline_reason,
)

_log = logging.getLogger("edgekd.models")
# timm.create_model arguments that fetch or read weights on their own.
REFUSED_TIMM_KWARGS = ("checkpoint_path", "cache_dir", "pretrained_cfg", "pretrained_cfg_overlay")
_MODES = {False: "off", None: "off", True: "on", "auto": "auto"}
_SOURCES = ("hf-hub", "local-dir")
_announced: set[str] = set()  # models whose "random weights" line was already logged


def pretrained_mode(label: str, value: Any) -> str:
    """``"off"``, ``"on"`` or ``"auto"`` for a ``pretrained`` value of true, false or auto.

    Raises:
        ConfigError: any other value.
    """
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, (bool, type(None))) or key == "auto":
        return _MODES[key]
    raise ConfigError(
        f"model {label!r}: pretrained must be true, false or auto, got {value!r:.60}",
        hint="pretrained: true (weights from the hub or its cache), auto (those when they can be had), "
        "or false; pretrained_path: FILE for local weights",
    )


def create_timm_model(
    name: str,
    num_classes: int,
    in_channels: int,
    kwargs: dict[str, Any],
    *,
    pretrained: str,
    cache_only: bool,
) -> nn.Module:
    """``timm.create_model(name, ...)`` -> [N, in_channels, H, W] -> [N, num_classes], its initial
    weights per ``pretrained`` (``"off"``, ``"on"``, ``"auto"``). ``cache_only``: never ask the
    network (a model read from a file); ``pretrained`` must then be ``"off"``.

    Raises:
        ConfigError: unknown name or tag, a refused or bad argument.
        PretrainedUnavailable: weights (``"on"``) or an ``hf-hub:`` config that cannot be had.
    """
    import timm  # heavy; imported only when a timm model is asked for

    label = f"timm:{name}"
    for key in REFUSED_TIMM_KWARGS:
        if kwargs.get(key):
            raise ConfigError(
                f"model {label!r}: {key!r} is not supported (it names a file, folder or URL to read)",
                hint="set pretrained: true (weights from the hub or its cache), or pretrained_path: "
                "/path/to/model.safetensors; write a pretrained tag in the name, timm:NAME.TAG",
            )
    source, ident = _split_source(name)
    if source is None:
        _check_registry_name(timm, name)
    build = _Build(timm, label, name, num_classes, in_channels, kwargs)
    if pretrained == "off":
        return build.random(cache_only=cache_only)
    try:
        return build.pretrained(source, ident)
    except PretrainedUnavailable as exc:
        if pretrained == "on":
            raise
        warn_random_start(label, exc.message)
        return build.random(cache_only=False)


def warn_random_start(label: str, why: str) -> None:
    """One warning line, once per model and process (a recipe run builds each model twice:
    the preflight check, then the stage): ``WHY; starting from random weights``."""
    if label not in _announced:
        _announced.add(label)
        _log.warning("%s; starting from random weights (pretrained: auto)", why)


def _split_source(name: str) -> tuple[str | None, str]:
    """``("hf-hub", "org/name")`` for ``hf-hub:org/name``; ``(None, name)`` for a registry name."""
    prefix, sep, ident = name.partition(":")
    prefix = prefix.lower().replace("hf_hub", "hf-hub")
    if sep and prefix in _SOURCES:
        if not ident:
            raise ConfigError(
                f"model 'timm:{name}' has nothing after {prefix}:",
                hint="e.g. timm:hf-hub:timm/resnet18.a1_in1k",
            )
        return prefix, ident
    if sep or "/" in name or "\\" in name:
        raise ConfigError(
            f"timm model name {name!r} is neither a timm name nor hf-hub:ORG/NAME nor local-dir:FOLDER",
            hint=f"a hub model is timm:hf-hub:{name.rpartition(':')[2]}",
        )
    return None, name


def _check_registry_name(timm: Any, name: str) -> None:
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model {name!r}", hint=_timm_suggestion(name, timm.list_models()))
    arch, _dot, tag = name.partition(".")
    if tag:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError:
            tags = timm.list_pretrained(f"{arch}.*")
            raise ConfigError(
                f"timm model {arch!r} has no pretrained tag {tag!r}",
                hint=_timm_suggestion(name, tags) if tags else f"write timm:{arch}; it has no tagged weights",
            ) from None


class _Build:
    """One model request; each method calls timm once and turns its errors into one line."""

    def __init__(self, timm: Any, label: str, name: str, classes: int, channels: int, kwargs: dict) -> None:
        self.timm, self.label, self.name = timm, label, name
        self.num_classes, self.in_channels, self.kwargs = classes, channels, kwargs

    def random(self, *, cache_only: bool) -> nn.Module:
        source, ident = _split_source(self.name)
        hub_cache = cache_label(hub=True)
        if source != "hf-hub":
            return self._call(self.name, pretrained=False, cache=f"the folder {ident}" if source else None)
        # An hf-hub model's architecture is in its config.json: from the cache, else the hub.
        folder = cached_hub_model(ident, with_weights=False)
        if folder is not None:
            return self._call(f"local-dir:{folder}", pretrained=False, cache=hub_cache)
        why = "a file may not make edgekd download" if cache_only else offline_reason(hub_endpoint())
        if why:
            what = f"its config.json ({ident} on the Hugging Face hub)"
            raise self._unavailable(what, why, hub_cache, weights=False)
        return self._call(self.name, pretrained=False, cache=hub_cache, cache_dir=str(hub_cache_dir()))

    def pretrained(self, source: str | None, ident: str) -> nn.Module:
        if source == "local-dir":  # the person named the folder; timm reads it
            return self._call(self.name, pretrained=True, cache=f"the folder {ident}")
        if source == "hf-hub":
            folder = cached_hub_model(ident, with_weights=True)
            if folder is not None:
                return self._call(f"local-dir:{folder}", pretrained=True, cache=cache_label(hub=True))
            return self._download(WeightsSource(ident, None, None))
        cfg = self.timm.models.get_pretrained_cfg(self.name)
        weights = WeightsSource.of(cfg)
        if weights is None:
            family = self.name.partition(".")[0]
            raise PretrainedUnavailable(
                f"model {self.label!r}: timm has no pretrained weights for {self.name!r}",
                hint="set pretrained_path: /path/to/weights.safetensors, or pick a model with weights: "
                f"python -c \"import timm; print(timm.list_pretrained('{family}*'))\"",
            )
        found = cached_weights(weights)
        if found is not None:  # a cache hit: timm's own local-file override, no network
            overlay = {"file": str(found), "custom_load": cfg.custom_load}
            cache = weights.cache_label
            return self._call(self.name, pretrained=True, cache=cache, pretrained_cfg_overlay=overlay)
        return self._download(weights)

    def _download(self, weights: WeightsSource) -> nn.Module:
        why = offline_reason(weights.endpoint)
        if why:
            raise self._unavailable(f"its pretrained weights ({weights.label})", why, weights.cache_label)
        extra = {"cache_dir": str(hub_cache_dir())} if weights.hub_id else {}
        return self._call(self.name, pretrained=True, cache=weights.cache_label, **extra)

    def _call(self, name: str, *, pretrained: bool, cache: str | None, **extra: Any) -> nn.Module:
        """timm.create_model. When it reads or fetches files (``cache``: where they are kept) any
        failure other than a bad argument means they cannot be had."""
        try:
            return self.timm.create_model(
                name, pretrained=pretrained, num_classes=self.num_classes, in_chans=self.in_channels,
                **extra, **self.kwargs,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ConfigError(
                f"model {self.label!r} cannot be built with {self.kwargs}: {detail}",
                hint="check the model kwargs against the timm model's arguments",
            ) from None
        except Exception as exc:  # download, cache and file errors come in many types
            if cache is None:
                raise
            detail = " ".join(str(exc).split())[:200] or "no detail"
            what = "its pretrained weights" if pretrained else "its config"
            raise PretrainedUnavailable(
                f"model {self.label!r}: cannot get {what}: {type(exc).__name__}: {detail}",
                hint=_hint(cache, weights=pretrained),
            ) from None

    def _unavailable(self, what: str, why: str, cache: str, *, weights: bool = True) -> PretrainedUnavailable:
        folder = cache.split(" (")[0]
        return PretrainedUnavailable(
            f"model {self.label!r}: cannot get {what}: {why}, and no copy is in {folder}",
            hint=_hint(cache, weights=weights),
        )


def _hint(cache: str, *, weights: bool) -> str:
    if cache.startswith("the folder"):  # local-dir: the person's own folder
        return f"{cache} needs a config.json and model.safetensors, as timm's save_for_hf writes them"
    if not weights:  # an hf-hub model's config: nothing else names its architecture
        return f"build it once where the hub can be reached, which fills {cache}, or use a timm:NAME model"
    return (
        "set pretrained_path: /path/to/weights.safetensors in the model's kwargs, or fill "
        f"{cache} on a machine that reaches the hub, or set pretrained: auto to start from random weights"
    )


def _timm_suggestion(name: str, names: list[str]) -> str:
    """'did you mean' among timm's ~1,400 names; never the whole list."""
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return f"did you mean {close[0]!r}? similar: {', '.join(close)}"
    return (
        f"no timm model is close to {name!r}; list a family with "
        "python -c \"import timm; print(timm.list_models('*convnext*'))\""
    )


__all__ = ["REFUSED_TIMM_KWARGS", "create_timm_model", "pretrained_mode", "warn_random_start"]
