"""Which teacher a recipe should train: candidates scored on a held-out selection draw.

A recipe's default teacher must earn its place: the strongest network that trains within the
recipe's own teacher budget (its ``teacher.train`` section: epochs, batch, learning rate,
early stopping), judged on frames that neither training nor the published test figures use.

On RadioML-2016-style synthetic frames (all 11 RadioML 2016.10a classes, the 8 digital and
AM-DSB, AM-SSB, WBFM; multipath; SNR -20..18 dB), each candidate trains on the train split of
generator seed 0 with the recipe's teacher settings and is scored on a draw of generator seed
2 (the selection set: new symbols, noise and channels; seed 1 is the test set of the other
benchmarks and is never read here). An ensemble of N ResNet-1D seeds (the mean of their logits)
costs N trainings: it is listed with its cost.

    python benchmarks/teacher_choice.py                       # modrec-rml2016, ~40 min on 2 cores
    python benchmarks/teacher_choice.py --quick               # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time

import torch

from edgekd.data.channel import ANALOG_MODULATIONS
from edgekd.data.modulation import MODULATIONS, SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.checks import predict_logits
from edgekd.distill.train import train_supervised
from edgekd.models import create_model
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.ensemble import TeacherEnsemble
from edgekd.pipeline.recipe import load_recipe

CLASSES = list(MODULATIONS + ANALOG_MODULATIONS)


def _data(frames: int, seed: int):
    cfg = SyntheticModulationConfig(classes=CLASSES, frames_per_class_snr=frames, multipath=True, seed=seed)
    return generate_modulation_dataset(cfg)


def _scores(model: torch.nn.Module, data) -> tuple[float, float]:
    hits = predict_logits(model, data.x, 1024).argmax(1).numpy() == data.y
    return float(hits.mean()), float(hits[data.snr >= 0].mean())


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="modrec-rml2016")
    parser.add_argument("--frames", type=int, default=60, help="frames per class and SNR (train+val+test)")
    parser.add_argument("--selection-frames", type=int, default=20, help="per class and SNR, seed 2")
    parser.add_argument("--candidates", default="clst1d,resnet1d")
    parser.add_argument("--ensemble", type=int, default=3, help="resnet1d seeds in the ensemble (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    # The recipe's data path is not read here (synthetic frames stand in for the file).
    recipe = load_recipe(args.recipe, ["data.source=synthetic_modulation"])
    budget = dataclasses.replace(recipe.teacher.train, device="cpu")
    if args.quick:
        args.frames, args.selection_frames, args.ensemble = 4, 2, 2
        budget = dataclasses.replace(budget, epochs=2, warmup_epochs=0)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    full = _data(args.frames, 0)
    train, val = full.subset("train"), full.subset("val")
    selection = _data(args.selection_frames, 2)
    k, shape = train.num_classes, train.input_shape
    rows, members = [], []
    for name in args.candidates.split(","):
        seeds = range(max(args.ensemble, 1)) if name == "resnet1d" else range(1)
        for seed in seeds:
            torch.manual_seed(seed)
            model = create_model(name, k, shape[0])
            began = time.perf_counter()
            result = train_supervised(model, train, val, dataclasses.replace(budget, seed=seed))
            took = time.perf_counter() - began
            scores = _scores(model, selection)
            _note(f"{name} seed {seed}: {scores} in {took:.0f}s ({result.best_epoch} best epoch)")
            rows.append(
                (f"{name} (seed {seed})", count_params(model), count_macs(model, shape), scores, took, 1)
            )
            if name == "resnet1d":
                members.append((model, took))
    if len(members) > 1:
        ensemble = TeacherEnsemble(k, shape[0], [m for m, _ in members]).eval()  # safe: nn.Module.eval()
        cost = sum(t for _, t in members)
        rows.append(
            (
                f"ensemble of {len(members)} resnet1d",
                count_params(ensemble),
                count_macs(ensemble, shape),
                _scores(ensemble, selection),
                cost,
                len(members),
            )
        )
    print(
        f"\n### Teacher candidates for {args.recipe} ({platform.processor() or platform.machine()}, "
        f"{args.threads} threads, {(time.perf_counter() - start) / 60:.1f} min)\n\n"
        f"train {len(train)} / val {len(val)} frames (generator seed 0, {len(CLASSES)} classes, multipath); "
        f"selection {len(selection)} frames (seed 2); budget: the recipe's teacher.train ({budget.epochs} "
        f"epochs, batch {budget.batch_size}, lr {budget.lr}, early stop {budget.early_stop_patience})\n"
    )
    print(
        "| teacher | params | MACs | selection acc (all SNR) % | (SNR >= 0 dB) % | train time s | trainings |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, params, macs, (overall, high), took, runs in rows:
        print(
            f"| {name} | {params:,} | {macs:,} | {overall * 100:.2f} | {high * 100:.2f} "
            f"| {took:.0f} | {runs} |"
        )
    best = max(rows, key=lambda r: r[3][1])
    print(f"\nstrongest at SNR >= 0 dB on the selection draw: {best[0]} ({best[3][1] * 100:.2f})")


if __name__ == "__main__":
    main()
