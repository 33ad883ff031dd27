"""Quantization-aware distillation vs post-training INT8 on the synthetic modulation set.

1. data: synthetic RadioML-style frames (8 classes, SNR -20..+18 dB), train/val/test split;
2. teacher: ``resnet1d`` trained on the labels;
3. student: a small 1-D CNN distilled from the teacher (Hinton KD) WITHOUT weight decay,
   then (``--outliers``, on by default) given outlier activation channels by an exact,
   function-preserving rescaling (see ``inject_outlier_channels``): the FP32 student is
   unchanged, but a few channels now span a range far wider than the rest, which is what
   breaks per-tensor INT8 activations in real networks. This is the student "whose PTQ
   INT8 accuracy drop exceeds the budget";
4. PTQ: ONNX Runtime static INT8 (QDQ, per-channel weights, uint8 activations, min/max on
   256 SNR-stratified training frames);
5. QAT: ``edgekd.qat.qat_distill`` with the teacher's logits (KD loss), 8 epochs at a
   small LR, exported as Q/DQ ONNX and scored on ONNX Runtime (and OpenVINO).

Accuracy overall and at SNR >= 0 dB on the test split, with drops against FP32 in points.
Prints a Markdown table.

    python benchmarks/qat.py            # ~70 s on 2 quiet CPU cores (3-5 min when shared)
    python benchmarks/qat.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.config import KDConfig, TrainConfig
from edgekd.distill.train import distill, train_supervised
from edgekd.models import create_model
from edgekd.qat import QatConfig, qat_distill

CLASSES = ["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"]


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@torch.no_grad()
def inject_outlier_channels(model: nn.Module, gain: float, channels: int = 1) -> int:
    """Scale ``channels`` output channels of every conv-BN-ReLU block by ``gain`` and divide the
    matching input weights of the layer after it (next conv, or the linear head after the
    average pool) by it. ReLU and average pooling are positively homogeneous
    (``relu(g*x) = g*relu(x)`` for g > 0), so the network computes the same function up to
    float rounding, but those channels' activations now span ``gain`` times the range of the
    others: a per-tensor INT8 scale set by them leaves the other channels a few levels. Returns
    the number of layers changed. Works on ``cnn1d_small`` (Sequential of conv-BN-ReLU blocks).
    """
    blocks = list(model.features)
    consumers = [nxt[0] for nxt in blocks[1:]] + [model.head[-1]]
    idx = torch.arange(channels)
    for block, consumer in zip(blocks, consumers, strict=True):
        bn = block[1]
        bn.weight[idx] *= gain
        bn.bias[idx] *= gain
        consumer.weight[:, idx] /= gain
    return len(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per class and SNR (all splits)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.6,
        help="a large test split: accuracy differences of half a point need thousands of frames",
    )
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=8)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--ranges", choices=["learned", "frozen"], default="learned")
    parser.add_argument("--outlier-gain", type=float, default=32.0, help="0 disables the outlier injection")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.teacher_epochs, args.student_epochs, args.qat_epochs = 20, 2, 3, 1
    torch.set_num_threads(args.threads)
    start = time.time()

    data = generate_modulation_dataset(
        SyntheticModulationConfig(
            classes=CLASSES,
            frames_per_class_snr=args.frames,
            val_fraction=0.1,
            test_fraction=args.test_fraction,
            seed=0,
        )
    )
    train, val = data.subset("train"), data.subset("val")
    _note(f"data: {len(train)} train / {len(val)} val / {len(data.subset('test'))} test frames")

    # A slim ResNet (one block per stage, width 16): the teacher's training dominates the run time.
    teacher = create_model("resnet1d", len(CLASSES), width=16, blocks=[1, 1, 1])
    train_supervised(
        teacher, train, val, TrainConfig(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, device="cpu")
    )
    _note(f"teacher trained ({time.time() - start:.0f} s)")

    student = create_model("cnn1d_small", len(CLASSES))
    no_decay = TrainConfig(
        epochs=args.student_epochs, batch_size=128, lr=5e-3, weight_decay=0.0, device="cpu"
    )
    distill(student, teacher, train, val, no_decay, KDConfig(loss="kd", temperature=4.0, alpha=0.7))
    if args.outlier_gain > 0:
        layers = inject_outlier_channels(student, args.outlier_gain)
        _note(f"outlier channels: x{args.outlier_gain:g} on 2 channels of {layers} blocks (FP32 unchanged)")
    _note(f"student trained ({time.time() - start:.0f} s)")

    cfg = QatConfig(
        ranges=args.ranges,
        kd=KDConfig(loss="kd", temperature=4.0, alpha=0.7),
        train=TrainConfig(
            epochs=args.qat_epochs, batch_size=128, lr=args.qat_lr, weight_decay=0.0, device="cpu"
        ),
    )
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-qat-") as folder:
        result = qat_distill(student, teacher, data, cfg, Path(folder), log=_note)
    ort_check = next(c for c in result.export.checks if c.runtime == "onnxruntime")

    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}; took {time.time() - start:.0f} s"
    )
    print(
        f"student cnn1d_small, no weight decay, outlier gain {args.outlier_gain:g}; "
        f"QAT {args.qat_epochs} epochs at lr {args.qat_lr:g}, {cfg.resolved_weight_bits()}-bit weights, "
        f"{cfg.activations} activations, {cfg.ranges} ranges; test split, {len(data.subset('test'))} frames\n"
    )
    print(result.table())
    if result.ptq is not None:
        print(f"\nPTQ weights: {'7-bit (reduce_range)' if result.ptq['reduce_range'] else '8-bit'}")
    print(
        f"\nQAT ONNX on ONNX Runtime vs fake-quant torch: top-1 agreement {ort_check.top1_agreement:.2%}, "
        f"mean |dlogit| {ort_check.mean_abs_error:.4f}; ORT kernels: "
        + ", ".join(f"{k} {v}" for k, v in result.export.onnxruntime_kernels.items())
    )


if __name__ == "__main__":
    main()
