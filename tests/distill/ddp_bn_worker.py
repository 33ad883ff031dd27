"""Two gloo ranks distilling into a student WITH BatchNorm (as every built-in student has).

    python -m torch.distributed.run --nproc-per-node 2 --standalone -m tests.distill.ddp_bn_worker OUT

Each rank first asks for ``train.sync_batchnorm`` (refused on CPU: torch's SyncBatchNorm
runs on CUDA only) and records the error, then distils with plain DDP and saves its own
final state to ``OUT/rank<R>.pt``: the test checks that both ranks hold the same model,
BatchNorm running statistics included.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch import nn

from edgekd.config import from_dict
from edgekd.distill.train import KDConfig, TrainConfig, TrainResult, distill
from edgekd.errors import ConfigError
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

CFG = TrainConfig(epochs=2, batch_size=32, lr=5e-3, device="cpu", num_threads=1, ema=0.9)
# ofa adds a projection head with its own BatchNorm inside the objective.
KD = from_dict(KDConfig, {"terms": [{"name": "kd"}, {"name": "ofa", "student": ["features.1"]}]})


def run(cfg: TrainConfig = CFG) -> tuple[nn.Module, TrainResult]:
    train, val = tone_dataset(128, seed=0), tone_dataset(32, seed=1)
    torch.manual_seed(0)
    teacher = create_model("cnn1d_small", 4, width=8)
    student = create_model("cnn1d_small", 4, width=4)
    return student, distill(student, teacher, train, val, cfg, KD)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    try:
        run(dataclasses.replace(CFG, sync_batchnorm=True))
        refusal = ""
    except ConfigError as exc:
        refusal = exc.one_line()
    model, result = run()
    kinds = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
    rank = os.environ["RANK"]
    record = {"state_dict": model.state_dict(), "history": result.history, "refusal": refusal, "norms": kinds}
    torch.save(record, out / f"rank{rank}.pt")
