"""Where timm's pretrained weights live: the hub cache on disk, the hub itself, or nowhere here.

timm finds the ImageNet weights of ``NAME`` on the Hugging Face hub (``hf_hub_id``) or at a URL,
and caches them: hub files under the hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``), URL files under ``TORCH_HOME/hub/checkpoints``. This module
answers, without importing timm or touching the network unless asked:

* :func:`cached_weights` / :func:`cached_hub_file`: the file already on disk, if any (a cache
  hit needs no network at all);
* :func:`offline_reason`: why the hub cannot be asked now, or None. ``HF_HUB_OFFLINE=1`` says so
  at once; otherwise one HEAD request to the server, bounded by :data:`PROBE_SECONDS`, stands in
  for huggingface_hub's own attempts, which retry with back-off for about 23 s per file (two
  files per model) when the machine is offline: 46 s measured for one model, DNS failing at once.

The cache folders are read from the environment at each call, and the same folder is handed to
timm when it downloads, so the file looked for is the file written.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from edgekd.errors import InputFileError

HUB_ENDPOINT = "https://huggingface.co"
# Long enough for a DNS answer and a TCP handshake over a slow link, short enough that an
# offline machine (or one whose packets are dropped) says so in seconds, not minutes.
PROBE_SECONDS = 4.0
_TRUE = ("1", "on", "yes", "true")
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Weight file names timm asks the hub for, safetensors first (timm's own order).
_HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class PretrainedUnavailable(InputFileError):
    """Pretrained weights (or a hub model's config) that cannot be had here: exit 2."""


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where timm would fetch one model's weights: a hub repo (and file) or a URL."""

    hub_id: str | None  # "timm/convnextv2_large.fcmae_ft_in22k_in1k", may end in "@revision"
    hub_filename: str | None  # a file other than model.safetensors / pytorch_model.bin
    url: str | None

    @classmethod
    def of(cls, cfg: Any) -> WeightsSource | None:
        """From a timm ``PretrainedCfg``; None when it names no weights at all."""
        hub_id = getattr(cfg, "hf_hub_id", None) or None
        url = getattr(cfg, "url", None) or None
        if not hub_id and not url:
            return None
        return cls(hub_id, getattr(cfg, "hf_hub_filename", None) or None, url)

    @property
    def label(self) -> str:
        return f"{self.hub_id} on the Hugging Face hub" if self.hub_id else str(self.url)

    @property
    def cache_label(self) -> str:
        return cache_label(hub=bool(self.hub_id))

    @property
    def endpoint(self) -> str:
        return hub_endpoint() if self.hub_id else str(self.url)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment as huggingface_hub does."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def torch_checkpoint_dir() -> Path:
    """Where torch.hub (and timm's URL weights) keep downloaded files: ``TORCH_HOME/hub/checkpoints``."""
    import torch.hub  # reads TORCH_HOME at each call

    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_label(*, hub: bool) -> str:
    """The cache folder a hint names, with the variables that move it."""
    if hub:
        return f"the hub cache {hub_cache_dir()} (HF_HUB_CACHE or HF_HOME move it)"
    return f"the torch cache {torch_checkpoint_dir()} (TORCH_HOME moves it)"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT).rstrip("/")


def hub_offline_set() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, now or when huggingface_hub was imported."""
    if any(os.environ.get(k, "").strip().lower() in _TRUE for k in _OFFLINE_VARIABLES):
        return True
    constants = sys.modules.get("huggingface_hub.constants")  # imported already: its view counts too
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def offline_reason(url: str) -> str | None:
    """Why ``url``'s server cannot be asked now (``HF_HUB_OFFLINE``, no answer), or None."""
    if hub_offline_set():
        return "HF_HUB_OFFLINE is set"
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    failure = _probe(f"{parts.scheme or 'https'}://{parts.netloc}/", PROBE_SECONDS)
    return None if failure is None else f"{parts.hostname} cannot be reached ({failure})"


def _probe(url: str, seconds: float) -> str | None:
    """One HEAD request to ``url`` (through the proxies the environment sets, as downloads go):
    None when the server answers at all, else why not. A thread bounds it, since name resolution
    takes no timeout of its own. (A bare TCP connection proves little: some networks accept
    every connection and answer nothing.)"""
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=seconds).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # an error status is an answer: the server is there
            outcome.append(None)
        except Exception as exc:  # any failure to get an answer means: not reachable now
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                outcome.append(None)  # it answered; which certificates to trust is the downloader's call
            else:
                outcome.append(str(getattr(reason, "strerror", None) or reason or type(exc).__name__))

    worker = threading.Thread(target=ask, name="edgekd-hub-probe", daemon=True)
    worker.start()
    worker.join(seconds + 1.0)
    return outcome[0] if outcome else f"no answer in {seconds:g} s"


def split_revision(hub_id: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")`` (timm's ``hf-hub:`` revision syntax)."""
    repo, at, revision = hub_id.partition("@")
    return repo, (revision or None) if at else None


def cached_hub_file(hub_id: str, filename: str) -> Path | None:
    """``filename`` of hub repo ``hub_id`` in the hub cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    repo, revision = split_revision(hub_id)
    try:
        found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir(), revision=revision)
    except ValueError:  # a malformed repo id is simply not in the cache
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _hub_weight_files(filename: str | None) -> list[str]:
    """The files timm would load for ``filename``: its safetensors alternative first."""
    if not filename:
        return list(_HUB_WEIGHT_FILES)
    if filename.endswith("pytorch_model.bin"):
        return [filename[: -len("pytorch_model.bin")] + "model.safetensors", filename]
    if filename.endswith(".bin"):
        return [filename[: -len(".bin")] + ".safetensors", filename]
    return [filename]


def cached_weights(source: WeightsSource) -> Path | None:
    """The weights of ``source`` already on disk (hub cache, then torch's URL cache), or None."""
    if source.hub_id:
        for filename in _hub_weight_files(source.hub_filename):
            found = cached_hub_file(source.hub_id, filename)
            if found is not None:
                return found
    if source.url:
        name = os.path.basename(urllib.parse.urlsplit(source.url).path)
        path = torch_checkpoint_dir() / name
        if name and path.is_file():
            return path
    return None


def cached_hub_model(hub_id: str, *, with_weights: bool) -> Path | None:
    """The cached snapshot folder of an ``hf-hub:`` model (its config.json, and its weights when
    ``with_weights``), which timm builds from as ``local-dir:FOLDER``; None when not all cached."""
    config = cached_hub_file(hub_id, "config.json")
    if config is None:
        return None
    if with_weights and not any((config.parent / name).is_file() for name in _HUB_WEIGHT_FILES):
        return None
    return config.parent


__all__ = [
    "PROBE_SECONDS",
    "PretrainedUnavailable",
    "WeightsSource",
    "cache_label",
    "cached_hub_file",
    "cached_hub_model",
    "cached_weights",
    "hub_cache_dir",
    "hub_endpoint",
    "hub_offline_set",
    "offline_reason",
    "split_revision",
    "torch_checkpoint_dir",
]
