"""``edgekd search`` against a hand-picked student, on the synthetic modulation set; prints Markdown.

Issue #18's measurement. In one run, on this machine:

1. data: the synthetic RadioML-style set at ``--frames`` frames per class and SNR (80: the
   docs' twice-the-frames size), a test set from another generator seed (``--test-frames``);
2. a ``resnet1d`` teacher (first stage stride 1), trained once;
3. the hand-picked student (``mobilenet1d`` width 0.7, stem stride 1, the docs' best): its
   INT8 latency measured on the target by the search's own harness; that p50 is the budget;
4. the hand-picked student distilled in full, ``--seeds`` seeds (seed 0's wall time is the
   cost unit);
5. ``edgekd search`` (the same code the command runs) with that budget: candidates built and
   measured, ranked by the proxy, successive halving, the winner distilled in full (seed 0);
   the winner is then distilled with the other seeds;
6. accuracy at SNR >= 0 dB on the test set, measured latency, search cost and the proxy's
   Kendall tau.

``--image`` runs a small image search instead: a timm family (``--image-family``) on
synthetic OCT-like images, with a timm teacher trained here.

    python benchmarks/search.py --quick                      # smoke run, a few minutes
    python benchmarks/search.py --epochs 32 --views 4        # a mid-size run
    python benchmarks/search.py --frames 80 --teacher-epochs 60 --epochs 128 --views 16   # the docs' scale
    python benchmarks/search.py --image --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.data.dataset import ArrayDataset
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.checks import predict_logits
from edgekd.distill.config import AugmentConfig, KDConfig, TrainConfig
from edgekd.distill.train import train_supervised
from edgekd.models import create_model
from edgekd.models.checkpoint import load_checkpoint
from edgekd.pipeline.distill_stage import DistillSection, StudentSection, stage_distill
from edgekd.pipeline.teacher_stage import save_trained
from edgekd.runtime.machine import cpu_fingerprint
from edgekd.search.command import run_search_and_distill
from edgekd.search.config import HalvingConfig, SearchSection
from edgekd.search.latency import measure_latencies
from edgekd.search.space import Candidate, SearchSpace
from edgekd.targets import load_target

CLASSES = ["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"]
HAND_PICKED = Candidate.of("edgekd:mobilenet1d", {"width_mult": 0.7, "stem_stride": 1})


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _accuracy(model: torch.nn.Module, data: ArrayDataset) -> tuple[float, float]:
    """(overall top-1, top-1 over frames with SNR >= 0 dB; the latter None without SNRs)."""
    hits = predict_logits(model, data.x, 1024).argmax(1).numpy() == data.y
    at_snr = None if data.snr is None else float(hits[data.snr >= 0].mean())
    return float(hits.mean()), at_snr


def modulation_data(args, work: Path) -> tuple[Path, ArrayDataset]:
    full = generate_modulation_dataset(
        SyntheticModulationConfig(classes=CLASSES, frames_per_class_snr=args.frames)
    )
    path = work / "data.npz"
    full.save_npz(path)
    test = generate_modulation_dataset(
        SyntheticModulationConfig(classes=CLASSES, frames_per_class_snr=args.test_frames, seed=1)
    )
    return path, test


def train_teacher(
    model: str, kwargs: dict, data: Path, test: ArrayDataset, epochs: int, work: Path, views: int = 0
) -> Path:
    from edgekd.data.artifact import open_data
    from edgekd.data.batches import network_input_shape

    dataset = open_data(data)
    torch.manual_seed(0)
    teacher = create_model(model, dataset.num_classes, network_input_shape(dataset)[0], **kwargs)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=128,
        lr=3e-3,
        weight_decay=1e-4,
        num_workers=0,
        augment=augment_config(views),
    )
    train_supervised(teacher, dataset.subset("train"), dataset.subset("val"), cfg)
    acc = _accuracy(teacher.eval(), test)
    _note(f"teacher {model}: test {acc[0]:.4f} overall, {acc[1]} at SNR >= 0")
    path = work / "teacher.pt"
    save_trained(path, teacher, model, kwargs, dataset)
    return path


def augment_config(views: int) -> AugmentConfig:
    """benchmarks/distill.py's IQ views: circular shift up to 16 samples and a carrier phase."""
    return AugmentConfig(time_shift=16, phase_rotation=True, views=views) if views else AugmentConfig()


def distill_section(args) -> DistillSection:
    augment = augment_config(args.views)
    train = TrainConfig(
        epochs=args.epochs, batch_size=128, lr=5e-3, weight_decay=1e-4, num_workers=0, augment=augment
    )
    return DistillSection(kd=KDConfig(loss="kd", temperature=4.0, alpha=args.alpha), train=train)


def full_distillation(
    candidate: Candidate, section: DistillSection, data: Path, teacher: Path, out: Path, seed: int
):
    """(test accuracy (overall, SNR >= 0), wall seconds) of one full distillation."""
    seeded = dataclasses.replace(section, train=dataclasses.replace(section.train, seed=seed))
    start = time.perf_counter()
    path = stage_distill(StudentSection(candidate.model, candidate.kwargs_dict()), seeded, data, teacher, out)
    seconds = time.perf_counter() - start
    model, _meta = load_checkpoint(path)
    return model, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80, help="frames per class and SNR (train+val)")
    parser.add_argument("--test-frames", type=int, default=100, help="frames per class and SNR (test)")
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=128, help="epochs of a full distillation")
    parser.add_argument("--views", type=int, default=16, help="augmentation views (0: none)")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", default="x86-cpu-onnxruntime-int8")
    parser.add_argument("--threads", type=int, default=1, help="threads the latency is measured with")
    parser.add_argument("--initial", type=int, default=8, help="candidates entering successive halving")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grid", action="append", default=[], help="KNOB=V1,V2 (as edgekd search --grid)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--image", action="store_true", help="the image search instead")
    parser.add_argument("--image-family", default="mobilenetv3")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.test_frames, args.teacher_epochs, args.epochs, args.seeds = 12, 6, 2, 4, 1
        args.views, args.initial, args.rounds = 0, 4, 2
    torch.set_num_threads(1)  # one training thread: the other core stays for the latency runs' noise
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-search-bench-") as tmp:
        work = Path(tmp)
        rows = image_search(args, work) if args.image else modulation_search(args, work)
    print(
        f"\nmachine: {platform.machine()}, {cpu_fingerprint()}; torch {torch.__version__}; "
        f"took {(time.perf_counter() - start) / 60:.1f} min"
    )
    print("\n".join(rows))


def modulation_search(args, work: Path) -> list[str]:
    from edgekd.search.command import parse_grid

    data, test = modulation_data(args, work)
    teacher = train_teacher(
        "resnet1d", {"strides": [1, 2, 2]}, data, test, args.teacher_epochs, work, args.views
    )
    target = load_target(args.target)
    frames = test.x[:64]
    hand = measure_latencies(
        [HAND_PICKED], target=target, frames=frames, num_classes=len(CLASSES), work_dir=work / "hand-work",
        cache_dir=None, threads=args.threads,
    )[HAND_PICKED.key()]  # fmt: skip
    budget = hand.p50_ms
    _note(f"hand-picked {HAND_PICKED.label()}: p50 {budget:.4f} ms on {target.name} -> the budget")
    section = distill_section(args)
    hand_acc, hand_seconds = [], []
    for seed in range(args.seeds):
        model, seconds = full_distillation(HAND_PICKED, section, data, teacher, work / f"hand-{seed}", seed)
        hand_acc.append(_accuracy(model, test))
        hand_seconds.append(seconds)
        _note(f"hand-picked seed {seed}: {hand_acc[-1]}, {seconds:.0f} s")
    search = SearchSection(
        space=SearchSpace(family="mobilenet1d", grid=parse_grid(args.grid)),
        latency_budget_ms=budget,
        halving=HalvingConfig(initial=args.initial, rounds=args.rounds),
    )
    tick = time.perf_counter()
    doc, student = run_search_and_distill(
        search, section, teacher=teacher, data=data, target=target, out_dir=work / "search",
        threads=args.threads, log=_note,
    )  # fmt: skip
    search_seconds = time.perf_counter() - tick
    winner = next(c for c in doc["candidates"] if c["key"] == doc["winner"]["key"])
    won = Candidate.of(winner["model"], winner["kwargs"])
    win_acc = [_accuracy(load_checkpoint(student)[0], test)]
    for seed in range(1, args.seeds):
        model, _seconds = full_distillation(won, section, data, teacher, work / f"won-{seed}", seed)
        win_acc.append(_accuracy(model, test))
    return _tables(args, doc, hand, hand_acc, hand_seconds[0], winner, win_acc, search_seconds)


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def _tables(args, doc, hand, hand_acc, full_seconds, winner, win_acc, search_seconds) -> list[str]:
    within = sum(c["within_budget"] for c in doc["candidates"])
    lines = [
        f"\nSearch of {doc['family']} on {doc['target']} ({args.threads} thread(s)), budget "
        f"{doc['budget_ms']:.4f} ms p50 (the hand-picked student's measured INT8 p50); "
        f"{len(doc['candidates'])} candidates, {within} within budget; "
        f"full distillation {args.epochs} epochs, {args.views} views, {args.seeds} seed(s); "
        f"frames {args.frames}/class/SNR, test {args.test_frames}/class/SNR (generator seed 1).\n",
        "| student | params | MACs | p50 ms | acc all % | acc SNR >= 0 % |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| hand-picked {HAND_PICKED.label()} | {hand.params:,} | {hand.macs:,} | {hand.p50_ms:.4f} "
        f"| {_mean_sd([a for a, _ in hand_acc])} | {_mean_sd([b for _, b in hand_acc])} |",
        f"| searched {winner['label']} | {winner['params']:,} | {winner['macs']:,} | "
        f"{winner['latency_ms']['p50']:.4f} | {_mean_sd([a for a, _ in win_acc])} | "
        f"{_mean_sd([b for _, b in win_acc])} |",
    ]
    gain = 100 * (statistics.mean(b for _, b in win_acc) - statistics.mean(b for _, b in hand_acc))
    tau = doc["proxy_kendall_tau"]
    lines += [
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| accuracy gain at SNR >= 0 (points, mean over seeds) | {gain:+.2f} |",
        f"| winner's p50 / hand-picked p50 | {winner['latency_ms']['p50'] / hand.p50_ms:.2f}x |",
        f"| search wall time (incl. the winner's full distillation) | {search_seconds:.0f} s |",
        f"| one full distillation of the hand-picked student | {full_seconds:.0f} s |",
        f"| search / full distillation | {search_seconds / full_seconds:.2f}x |",
        f"| search phases (s) | {doc['seconds']} |",
        f"| halving epochs spent | {doc['halving']['epochs_spent']} |",
        f"| proxy Kendall tau vs short-training accuracy | {'n/a' if tau is None else f'{tau:.2f}'} |",
    ]
    lines += ["", "Candidates (search.json):", "", _candidate_table(doc)]
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _candidate_table(doc) -> str:
    rows = ["| candidate | params | p50 ms | within | proxy | short acc % | rounds | final % | Pareto |",
            "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |"]  # fmt: skip
    for c in doc["candidates"]:
        lat = c["latency_ms"] or {}
        proxy = "-" if c["proxy"] is None else f"{c['proxy']['score']:.3f}"
        rounds = " / ".join(f"{100 * a:.1f}" for a in c["round_accuracy"])
        rows.append(
            f"| {c['label']} | {c['params'] or '-'} | {lat.get('p50', float('nan')):.4f} | "
            f"{'yes' if c['within_budget'] else 'no'} | {proxy} | {_pct(c['short_accuracy'])} | "
            f"{rounds} | {_pct(c['final_accuracy'])} | {'yes' if c['pareto'] else ''} |"
        )
    return "\n".join(rows)


def image_search(args, work: Path) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from quantize import IMAGE_CLASSES, render_images  # the synthetic OCT-like scenes

    size = 32
    n = 1200 if args.quick else 4800
    x, y = render_images(n, size, seed=0)
    test_x, test_y = render_images(n // 4, size, seed=1)
    split = np.array([0] * int(0.85 * n) + [1] * (n - int(0.85 * n)))  # train, val
    full = ArrayDataset(x=x, y=y, split=split, class_names=list(IMAGE_CLASSES))
    data = work / "images.npz"
    full.save_npz(data)
    test = ArrayDataset(x=test_x, y=test_y, class_names=list(IMAGE_CLASSES))
    teacher = train_teacher("timm:resnet18", {}, data, test, 3 if args.quick else 10, work)
    target = dataclasses.replace(load_target(args.target), input_shape=[1, 3, size, size])
    section = distill_section(argparse.Namespace(**{**vars(args), "views": 0}))  # IQ views do not apply
    search = SearchSection(
        space=SearchSpace(family=args.image_family),
        halving=HalvingConfig(initial=args.initial, rounds=args.rounds),
    )
    tick = time.perf_counter()
    doc, _student = run_search_and_distill(
        search, section, teacher=teacher, data=data, target=target, out_dir=work / "image-search",
        threads=args.threads, log=_note,
    )  # fmt: skip
    return [
        f"\nImage search of {doc['family']} on synthetic OCT-like images ({size}x{size}, {n} frames), "
        f"{doc['target']}, budget {doc['budget_ms']} ms {doc['budget_percentile']} ({doc['budget_source']}); "
        f"{time.perf_counter() - tick:.0f} s; proxy Kendall tau "
        f"{doc['proxy_kendall_tau']}\n",
        _candidate_table(doc),
    ]


if __name__ == "__main__":
    main()
