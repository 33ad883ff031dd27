"""Networks: the model factory and built-in 1-D zoo, checkpoints, size and compute.

Importing this package imports torch (``import edgekd`` alone does not).
"""

from edgekd.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint, unwrap_model
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.factory import MODELS, create_model

__all__ = [
    "MODELS",
    "CheckpointMeta",
    "count_macs",
    "count_params",
    "create_model",
    "load_checkpoint",
    "save_checkpoint",
    "unwrap_model",
]
