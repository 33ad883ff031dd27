"""A tiny distillation run for the exact-resume test, run as a subprocess.

    python -m tests.distill.resume_worker OUT_DIR WEIGHTS [--kill-at STEP] [--resume]

``--kill-at`` sends SIGKILL to this very process right after optimizer step STEP (no
clean-up, no atexit: what a preempted job gets). The final student weights go to WEIGHTS.
"""

from __future__ import annotations

import argparse
import os
import signal

import torch

from edgekd.config import from_dict
from edgekd.distill.train import KDConfig, TrainConfig, distill
from edgekd.models import create_model
from tests.distill.synthetic import tone_dataset

CFG = TrainConfig(
    epochs=2,
    batch_size=32,
    lr=1e-2,
    warmup_epochs=1,
    grad_clip=5.0,
    ema=0.9,
    checkpoint_every=3,
    deterministic=True,
    device="cpu",
    num_threads=1,
)
KD = from_dict(KDConfig, {"terms": [{"name": "kd"}, {"name": "ofa", "student": ["features.1"]}]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("weights")
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    train, val = tone_dataset(256, seed=0), tone_dataset(64, seed=1)
    torch.manual_seed(0)
    teacher = create_model("resnet1d", 4, width=8, blocks=[1, 1, 1])
    student = create_model("cnn1d_small", 4, width=4)

    def on_step(step: int) -> None:
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    distill(student, teacher, train, val, CFG, KD, out_dir=args.out_dir, resume=args.resume, on_step=on_step)
    torch.save(student.state_dict(), args.weights)


if __name__ == "__main__":
    main()
