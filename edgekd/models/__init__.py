"""Networks: the model factory and built-in 1-D zoo, checkpoints, size and compute.

Layers, each importing only those below it (tests/models/test_import_graph.py holds it so):
``registry`` (MODELS) and ``weights`` (weight files) are leaves; the zoo modules register
themselves in ``registry``; ``ensemble`` is the network only; ``timm_hub`` (the hub cache and
whether it can be reached) under ``timm_models`` (timm networks, ``pretrained: true/auto``);
``factory`` builds any model (importing the zoo); ``checkpoint`` rebuilds through the
factory; ``teacher`` opens teachers.

The names below import torch when first used; ``edgekd.models.trust`` (the rule that a file
never chooses code to run) does not, so the CLI root can use it before any command.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule defining it (imported on first use)
_EXPORTS = {
    "MODELS": "factory",
    "create_model": "factory",
    "CheckpointMeta": "checkpoint",
    "combine_checkpoints": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "unwrap_model": "checkpoint",
    "count_macs": "complexity",
    "count_params": "complexity",
    "load_pretrained_weights": "weights",
    "read_state_dict": "weights",
    "load_teacher": "teacher",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgekd.models.{module}"), name)


__all__ = sorted(_EXPORTS)
