"""Distillation on unlabelled frames: the student's accuracy against the size of the pool.

The setting of issue #20: labels are scarce, captures are not. On the synthetic modulation set
(8 classes, SNR -20..18 dB), a ResNet-1D teacher trains on the labelled frames (generator seed
0, its train split). A ``mobilenet1d`` student (<= 1/20 of the teacher's parameters) then
trains on the same labelled frames:

* alone (cross-entropy: the baseline),
* with KD from the teacher (T 4, alpha 0.5) and no pool,
* with KD on the labelled frames plus a pool of unlabelled frames, 1x, 2x, 4x and 8x the
  labelled count, from another generator seed (3: new symbols, noise and offsets; its labels are
  dropped), mixed into the batches by their share of the set (``distill.kd.unlabelled_share``
  "auto"). The label term sees the labelled rows alone, the KD term every row.

Every student trains the same number of epochs over its training set, so a larger pool is also a
longer run (an epoch is a pass over labelled + pool frames). Accuracy is on a test set from the
held-out generator seed 1, as in ``benchmarks/distill.py``. Each seed is one process, so seeds run
side by side; ``--report`` prints the table from their result files.

    python benchmarks/distill_unlabelled.py --teacher-only --out /tmp/ul      # ~3 min, once
    python benchmarks/distill_unlabelled.py --seed 0 --out /tmp/ul &          # one per seed
    python benchmarks/distill_unlabelled.py --seed 1 --out /tmp/ul &
    python benchmarks/distill_unlabelled.py --seed 2 --out /tmp/ul; wait
    python benchmarks/distill_unlabelled.py --report --out /tmp/ul
    # the equal-steps control: no pool, as many steps as the 4x pool's run (its own folder,
    # the same teacher.pt copied in): --pools 0 --epochs 150 --no-scratch
    python benchmarks/distill_unlabelled.py --quick --out /tmp/ulq             # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.data.dataset import ArrayDataset
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.checks import predict_logits
from edgekd.distill.config import AugmentConfig
from edgekd.distill.train import KDConfig, TrainConfig, distill, train_supervised
from edgekd.models import create_model
from edgekd.models.complexity import count_params

CLASSES = ["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"]
POOL_SEED = 3  # seed 0: labelled frames, 1: test, 2: the docs' selection set


def _data(frames: int, seed: int) -> ArrayDataset:
    cfg = SyntheticModulationConfig(classes=CLASSES, frames_per_class_snr=frames, seed=seed)
    return generate_modulation_dataset(cfg)


def _pool(frames: int) -> np.ndarray:
    """``frames`` unlabelled frames from generator seed POOL_SEED (every SNR and class, shuffled)."""
    cells = 8 * 20  # classes x SNRs
    draw = _data(-(-frames // cells), POOL_SEED)
    order = np.random.default_rng(POOL_SEED).permutation(len(draw))[:frames]
    return draw.x[order]


def _accuracy(model: torch.nn.Module, data: ArrayDataset) -> tuple[float, float]:
    hits = predict_logits(model, data.x, 1024).argmax(1).numpy() == data.y
    return float(hits.mean()), float(hits[data.snr >= 0].mean())


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _config(args: argparse.Namespace, epochs: int, lr: float, seed: int) -> TrainConfig:
    augment = (
        AugmentConfig(time_shift=16, phase_rotation=True, views=args.views) if args.views else AugmentConfig()
    )
    return TrainConfig(epochs=epochs, batch_size=128, lr=lr, seed=seed, augment=augment)


def _teacher(args, train: ArrayDataset, val: ArrayDataset, test: ArrayDataset) -> torch.nn.Module:
    path = args.out / "teacher.pt"
    torch.manual_seed(0)
    teacher = create_model("resnet1d", train.num_classes, train.input_shape[0])
    if path.exists():
        teacher.load_state_dict(torch.load(path, weights_only=True))
        return teacher.eval()  # safe: nn.Module.eval(), inference mode
    train_supervised(teacher, train, val, _config(args, args.teacher_epochs, 3e-3, 0))
    torch.save(teacher.state_dict(), path)
    acc = _accuracy(teacher, test)
    (args.out / "teacher.json").write_text(json.dumps({"acc": acc, "params": count_params(teacher)}))
    _note(f"teacher: {acc[0]:.4f} / {acc[1]:.4f} (all / SNR >= 0)")
    return teacher


def _student(train: ArrayDataset, seed: int) -> torch.nn.Module:
    torch.manual_seed(100 + seed)
    return create_model("mobilenet1d", train.num_classes, train.input_shape[0], width_mult=0.7)


def _run_seed(args, teacher, train, val, test) -> dict:
    seed, results = args.seed, {}
    start = time.perf_counter()
    if not args.no_scratch:
        student = _student(train, seed)
        train_supervised(student, train, val, _config(args, args.epochs, 5e-3, seed))
        results["scratch"] = _accuracy(student, test)
        _note(f"seed {seed} scratch: {results['scratch']} at {time.perf_counter() - start:.0f}s")
    kd = KDConfig(loss="kd", temperature=4.0, alpha=args.alpha, unlabelled_share=args.share)
    cache = args.out / f"cache-{seed}"
    for multiple in args.pools:
        pool = None
        if multiple:
            x = _pool(int(multiple * len(train)))
            pool = ArrayDataset(x, np.zeros(len(x), dtype=np.int64), train.class_names)
        student = _student(train, seed)
        cfg = _config(args, args.epochs, 5e-3, seed)
        distill(student, teacher, train, val, cfg, kd, cache_dir=cache, unlabelled=pool)
        key = f"kd pool {multiple:g}x"
        results[key] = _accuracy(student, test)
        _note(f"seed {seed} {key}: {results[key]} at {time.perf_counter() - start:.0f}s")
    results["params"] = count_params(student)
    return results


def _report(args) -> None:
    teacher = json.loads((args.out / "teacher.json").read_text())
    seeds = sorted(args.out.glob("seed-*.json"))
    runs = [json.loads(p.read_text()) for p in seeds]
    teacher["acc"] = runs[0].get("teacher", teacher["acc"])  # scored on the runs' own frames
    meta = runs[0]["meta"]
    t_all, t_high = (a * 100 for a in teacher["acc"])
    print(
        f"\n### KD on unlabelled frames ({meta['machine']}, 1 thread per process, {len(runs)} seeds)\n\n"
        f"labelled: {meta['train']} train / {meta['val']} val frames (seed 0); pool: generator seed "
        f"{POOL_SEED}, labels dropped; scored on {meta['test']} frames of held-out seed "
        f"{meta.get('eval_seed', 1)}; teacher resnet1d "
        f"{meta['teacher_epochs']} epochs; students mobilenet1d 0.7, {meta['epochs']} epochs over their "
        f"training set, {meta['views']} augmentation views; KD T 4 alpha {meta['alpha']}, "
        f"unlabelled share {meta['share']}\n"
    )
    print("| model | params | acc (all SNR) % | acc (SNR >= 0 dB) % | vs teacher (SNR >= 0) | vs no pool |")
    print("| --- | ---: | --- | --- | ---: | ---: |")
    print(f"| teacher resnet1d | {teacher['params']:,} | {t_all:.2f} | {t_high:.2f} | | |")
    keys = [k for k in runs[0] if k not in ("params", "meta", "teacher")]
    base = statistics.mean(r["kd pool 0x"][1] * 100 for r in runs) if "kd pool 0x" in keys else None

    def fmt(v: list[float]) -> str:
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    for key in keys:
        overall = [r[key][0] * 100 for r in runs]
        high = [r[key][1] * 100 for r in runs]
        vs_pool = f"{statistics.mean(high) - base:+.2f}" if base is not None and key.startswith("kd") else ""
        print(
            f"| {key} | {runs[0]['params']:,} | {fmt(overall)} | {fmt(high)} | "
            f"{statistics.mean(high) - t_high:+.2f} | {vs_pool} |"
        )
    for key in keys:
        print(f"\n{key} per seed (SNR >= 0 dB): " + ", ".join(f"{r[key][1] * 100:.2f}" for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the teacher and the results")
    parser.add_argument(
        "--frames", type=int, default=40, help="labelled frames per class and SNR (train+val+test)"
    )
    parser.add_argument("--test-frames", type=int, default=20)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--share", default="auto", help="distill.kd.unlabelled_share: auto or a float")
    parser.add_argument(
        "--pools", default="0,1,2,4,8", help="pool sizes, in multiples of the labelled frames"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-seed", type=int, default=1, help="generator seed scored: 1 the test set, 2 the selection set"
    )
    parser.add_argument("--no-scratch", action="store_true", help="skip the student trained alone")
    parser.add_argument("--teacher-only", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.pools = [float(p) for p in args.pools.split(",")]
    args.share = args.share if args.share == "auto" else float(args.share)
    if args.report:
        _report(args)
        return
    if args.quick:
        args.frames, args.test_frames, args.teacher_epochs, args.epochs, args.views = 6, 4, 2, 2, 2
        args.pools = [0.0, 2.0]
    torch.set_num_threads(1)
    full = _data(args.frames, seed=0)
    train, val, test = full.subset("train"), full.subset("val"), _data(args.test_frames, seed=args.eval_seed)
    teacher = _teacher(args, train, val, test)
    if args.teacher_only:
        return
    results = _run_seed(args, teacher, train, val, test)
    results["teacher"] = _accuracy(teacher, test)
    results["meta"] = {
        "machine": platform.processor() or platform.machine(),
        "train": len(train),
        "val": len(val),
        "test": len(test),
        "teacher_epochs": args.teacher_epochs,
        "epochs": args.epochs,
        "views": args.views,
        "alpha": args.alpha,
        "share": args.share,
        "eval_seed": args.eval_seed,
    }
    (args.out / f"seed-{args.seed}.json").write_text(json.dumps(results))
    if args.quick:
        _report(args)


if __name__ == "__main__":
    main()
