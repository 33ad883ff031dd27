"""Quantization-aware distillation vs post-training INT8 on the synthetic modulation set, per seed.

1. data: synthetic RadioML-style frames (8 classes, SNR -20..+18 dB), train/val/test split;
2. teacher: ``resnet1d`` trained on the labels;
3. student: a small 1-D CNN distilled from the teacher (Hinton KD) WITHOUT weight decay,
   then (``--outlier-gain``, 32 by default) given outlier activation channels by an exact,
   function-preserving rescaling (see ``inject_outlier_channels``): the FP32 student is
   unchanged, but one channel per block now spans a range far wider than the rest, which is
   what breaks per-tensor INT8 activations in real networks. This is the student "whose PTQ
   INT8 accuracy drop exceeds the budget";
4. PTQ: ONNX Runtime static INT8 (QDQ, per-channel weights, uint8 activations, min/max on
   256 SNR-stratified training frames), of the student as it is and after cross-layer
   equalization (CLE, ``edgekd.qat.equalize``), so the gain of CLE alone is visible;
5. QAT: ``edgekd.qat.qat_distill`` (CLE unless ``--no-equalize``) with the teacher's logits
   (KD loss), 8 epochs at a small LR, exported as Q/DQ ONNX and scored on ONNX Runtime and
   OpenVINO; ``--fp32-control`` also fine-tunes the FP32 student the same way without
   quantization (how much of QAT's result is extra training alone).

Each seed sets the data, the initialisations and the batch order. Accuracy overall and at
SNR >= 0 dB on the test split, drops against FP32 in points; prints a table per seed and a
summary.

    python benchmarks/qat.py --fp32-control   # seeds 0 1 2
    python benchmarks/qat.py --quick --seeds 0  # smoke run
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekd.data.dataset import ArrayDataset
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.config import KDConfig, TrainConfig
from edgekd.distill.train import distill, train_supervised
from edgekd.models import create_model
from edgekd.qat import QatConfig, QatResult, qat_distill

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


def build_students(args: argparse.Namespace, seed: int) -> tuple[ArrayDataset, nn.Module, nn.Module]:
    """(data, teacher, bad student) of one seed: the data, the initialisations and the batch order."""
    start = time.time()
    data = generate_modulation_dataset(
        SyntheticModulationConfig(
            classes=CLASSES,
            frames_per_class_snr=args.frames,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=seed,
        )
    )
    train, val = data.subset("train"), data.subset("val")
    _note(f"seed {seed}: {len(train)} train / {len(val)} val / {len(data.subset('test'))} test frames")

    # A slim ResNet (one block per stage, width 16): the teacher's training dominates the run time.
    torch.manual_seed(seed)
    teacher = create_model("resnet1d", len(CLASSES), width=16, blocks=[1, 1, 1])
    teacher_cfg = TrainConfig(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, device="cpu", seed=seed)
    train_supervised(teacher, train, val, teacher_cfg)
    _note(f"teacher trained ({time.time() - start:.0f} s)")

    torch.manual_seed(seed)
    student = create_model("cnn1d_small", len(CLASSES))
    no_decay = TrainConfig(
        epochs=args.student_epochs, batch_size=128, lr=5e-3, weight_decay=0.0, device="cpu", seed=seed
    )
    distill(student, teacher, train, val, no_decay, KDConfig(loss="kd", temperature=4.0, alpha=0.7))
    if args.outlier_gain > 0:
        layers = inject_outlier_channels(student, args.outlier_gain)
        _note(f"outlier channels: x{args.outlier_gain:g} on 1 channel of {layers} blocks (FP32 unchanged)")
    _note(f"student trained ({time.time() - start:.0f} s)")
    return data, teacher, student


def qat_config(args: argparse.Namespace, seed: int) -> QatConfig:
    return QatConfig(
        equalize=not args.no_equalize,
        weight_bits=args.weight_bits if args.weight_bits == "auto" else int(args.weight_bits),
        ranges=args.ranges,
        kd=KDConfig(loss="kd", temperature=4.0, alpha=0.7),
        train=TrainConfig(
            epochs=args.qat_epochs, batch_size=128, lr=args.qat_lr, weight_decay=0.0, device="cpu", seed=seed
        ),
    )


def fp32_finetune_accuracy(args, data, teacher, student, cfg: QatConfig) -> float:
    """Control: the same KD fine-tuning (schedule, seed) without fake quantization, test accuracy.
    QAT trains the student further, so part of what it wins back may be extra training alone."""
    from edgekd.distill.checks import predict_logits

    model = copy.deepcopy(student)
    distill(model, teacher, data.subset("train"), data.subset("val"), cfg.train, cfg.kd)
    test = data.subset("test")
    return float(np.mean(predict_logits(model.cpu(), test.x).numpy().argmax(1) == test.y))


def _pct(row) -> str:
    return f"{row.overall:.2%} / {row.snr_ge0:.2%}"


def _drop(row, fp32) -> str:
    return f"{100 * (fp32.overall - row.overall):.2f} / {100 * (fp32.snr_ge0 - row.snr_ge0):.2f}"


def summary_table(results: list[tuple[int, QatResult, float | None]]) -> str:
    """One line per seed: FP32 accuracy, then drops in points (overall / SNR >= 0 dB)."""
    names = [r.name + (f" ({r.runtime})" if r.name == "QAT INT8" else "") for r in results[0][1].rows[1:]]
    head = ["seed", "FP32 acc. (all / SNR >= 0)", *(f"{n} drop" for n in names)]
    if results[0][2] is not None:
        head.append("FP32 KD fine-tune, no quant. (drop)")
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    for seed, result, control in results:
        fp32 = result.rows[0]
        cells = [str(seed), _pct(fp32), *(_drop(r, fp32) for r in result.rows[1:])]
        if control is not None:
            cells.append(f"{100 * (fp32.overall - control):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data + training seeds")
    parser.add_argument("--frames", type=int, default=100, help="frames per class and SNR (all splits)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.6,
        help="a large test split: accuracy differences of half a point need thousands of frames",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="QAT picks its best epoch on val")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=8)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--ranges", choices=["learned", "frozen"], default="learned")
    parser.add_argument("--no-equalize", action="store_true", help="QAT without cross-layer equalization")
    parser.add_argument(
        "--weight-bits", default="auto", choices=["auto", "7", "8"], help="8 saturates ORT's AVX2 kernels"
    )
    parser.add_argument("--outlier-gain", type=float, default=32.0, help="0 disables the outlier injection")
    parser.add_argument(
        "--fp32-control", action="store_true", help="also KD-fine-tune the FP32 student without quantization"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.teacher_epochs, args.student_epochs, args.qat_epochs = 20, 2, 3, 1
    torch.set_num_threads(args.threads)
    start = time.time()

    results = []
    for seed in args.seeds:
        data, teacher, student = build_students(args, seed)
        cfg = qat_config(args, seed)
        with tempfile.TemporaryDirectory(prefix="edgekd-bench-qat-") as folder:
            result = qat_distill(student, teacher, data, cfg, Path(folder), log=_note)
        control = fp32_finetune_accuracy(args, data, teacher, student, cfg) if args.fp32_control else None
        results.append((seed, result, control))
        ort_check = next(c for c in result.export.checks if c.runtime == "onnxruntime")
        ptq = result.ptq or {}
        print(f"\nseed {seed} ({time.time() - start:.0f} s so far):\n")
        print(result.table())
        for name, report in (("PTQ", ptq), ("PTQ + CLE", ptq.get("equalized"))):
            if report:
                print(f"{name} weights: {'7-bit (reduce_range)' if report['reduce_range'] else '8-bit'}")
        print(
            f"QAT ONNX on ONNX Runtime vs fake-quant torch: top-1 agreement {ort_check.top1_agreement:.2%}, "
            f"mean |dlogit| {ort_check.mean_abs_error:.4f}; ORT kernels: "
            + ", ".join(f"{k} {v}" for k, v in result.export.onnxruntime_kernels.items()),
            flush=True,
        )

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}; took {time.time() - start:.0f} s"
    )
    print(
        f"student cnn1d_small, no weight decay, outlier gain {args.outlier_gain:g}; "
        f"QAT {args.qat_epochs} epochs at lr {args.qat_lr:g}, {cfg.resolved_weight_bits()}-bit weights, "
        f"{cfg.activations} activations, {cfg.ranges} ranges, CLE {'on' if cfg.equalize else 'off'}; "
        f"drops in points against FP32 (all / SNR >= 0 dB) on {len(data.subset('test'))} test frames\n"
    )
    print(summary_table(results))


if __name__ == "__main__":
    main()
