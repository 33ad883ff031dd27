"""A tiny distillation run shared by the DDP test: under torchrun (2 gloo ranks) and alone.

    python -m torch.distributed.run --nproc-per-node 2 -m tests.distill.ddp_worker WEIGHTS

The student has no BatchNorm, so a 2-rank step (each rank half of every global batch,
gradients averaged) equals the single-process step up to float summation order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from edgekd.config import from_dict
from edgekd.distill.train import KDConfig, TrainConfig, TrainResult, distill
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

CFG = TrainConfig(epochs=2, batch_size=32, lr=5e-3, device="cpu", num_threads=1)
KD = from_dict(
    KDConfig, {"terms": [{"name": "kd"}, {"name": "fitnet", "student": ["1"], "teacher": ["stages.0"]}]}
)


def run(out_dir: Path | None) -> tuple[nn.Module, TrainResult]:
    train, val = tone_dataset(192, seed=0), tone_dataset(64, seed=1)
    torch.manual_seed(0)
    teacher = create_model("resnet1d", 4, width=8, blocks=[1, 1, 1])
    student = nn.Sequential(
        nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(1), nn.Linear(8, 4)
    )
    return student, distill(student, teacher, train, val, CFG, KD, out_dir=out_dir)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    model, result = run(out)
    if torch.distributed.is_initialized():
        raise SystemExit("the loop should have closed the process group it opened")
    import os

    if os.environ.get("RANK", "0") == "0":
        torch.save({"state_dict": model.state_dict(), "history": result.history}, out / "weights.pt")
