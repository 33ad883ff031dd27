"""Distillation benchmark on the synthetic modulation set: accuracy and training throughput.

Trains a 1-D ResNet teacher once (or ``--teachers N`` of them, seeds 0..N-1, that teach as
one ``ensemble``: the mean of their logits), then the same small student from scratch and with the
``kd``, ``dkd``, ``nkd``, ``ofa`` and ``kd-mixup`` objectives (``--methods``; scratch always
runs) over several seeds, and reports accuracy
(mean and std over seeds, overall and at SNR >= 0 dB) on a test set generated with a
held-out generator seed, with parameters and MACs. Teacher and students train on the same
frames with the same IQ augmentation (time shift + phase rotation, ``--views`` views), the
students with the same epochs and optimiser; a KD student sees the teacher's logits of the
very view it trains on (computed once, shared by every KD run through one teacher cache).
``kd-mixup`` is pure KD on views that also mix in up to ``--mixup`` of a seed-drawn partner
frame (``edgekd.distill.augment.materialize_views``), each with the teacher's logits of that mixture.
It then measures training throughput (samples/s of the second epoch's optimizer steps,
validation excluded) of ``--throughput-student`` alone, with online KD (teacher run per
batch) and with cached-teacher KD (fp16 and top-k storage), and with IQ augmentation (time
shift + phase rotation, 4 cached views). The modes run in turn, ``--repeats`` times, and the
table gives the median (and range) of each. ``--hand-loop`` measures instead edgekd's
cached-teacher KD step beside a minimal hand-written loop (the same student, batch,
optimiser and fp16 teacher logits) on the frames in memory and memory-mapped from an npz
(``edgekd.data.lazy_arrays``, as real-size data is read), in alternating repeats (issue #20).
Prints Markdown.

    python benchmarks/distill.py                     # the 2026-11-25 table: ~18 min on 2 shared cores
    python benchmarks/distill.py --epochs 64 --views 16 --methods kd,kd-mixup --no-throughput  # ~8 min
    # the 2026-12-05 long-schedule table (~11 min on one core): --teacher-epochs 60 --epochs 128
    # --views 16 --test-frames 100 --methods kd --no-throughput
    # its full-length-stem table (~17 min): the same plus --teacher-strides 1,2,2 --stem-stride 1
    # --alpha 0.5; --teachers 4 distils from an ensemble of four teachers (~35 min)
    # the run that meets issue #3's goals (~36 min on one core): that full-length-stem command
    # with --frames 80 (twice the labelled frames, for every model)
    python benchmarks/distill.py --quick             # smoke run, ~1 min
    python benchmarks/distill.py --throughput-only   # the training-mode table alone, ~1-2 min
    python benchmarks/distill.py --hand-loop --repeats 7   # edgekd against a hand loop, ~1 min
    python benchmarks/distill.py --device cuda --amp-compare
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.config import from_dict
from edgekd.data.dataset import ArrayDataset
from edgekd.data.modulation import SyntheticModulationConfig, generate_modulation_dataset
from edgekd.distill.augment import materialize_views
from edgekd.distill.checks import predict_logits
from edgekd.distill.config import AugmentConfig
from edgekd.distill.optim import make_optimizer
from edgekd.distill.train import KDConfig, TrainConfig, distill, train_supervised
from edgekd.models import create_model
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.ensemble import TeacherEnsemble

CLASSES = ["BPSK", "QPSK", "8PSK", "QAM16", "QAM64", "PAM4", "GFSK", "CPFSK"]

METHODS: dict[str, dict | None] = {
    "scratch": None,  # cross-entropy only, no teacher
    # alpha 0.9 and DKD's beta 2 (paper: 8) won single-seed trials on this set (docs/benchmarks.md).
    "kd": {"loss": "kd", "temperature": 4.0, "alpha": 0.9},
    "dkd": {"terms": [{"name": "ce"}, {"name": "dkd", "params": {"beta": 2.0, "warmup_epochs": 2}}]},
    "nkd": {"terms": [{"name": "ce"}, {"name": "nkd"}]},
    "ofa": {
        "terms": [
            {"name": "kd", "params": {"alpha": 0.9}},
            {"name": "ofa", "student": ["features.0", "features.1"]},
        ]
    },
    # Pure KD (alpha 1: a mixed frame has no single label) on frames mixed with a partner frame
    # ("function matching", Beyer et al. 2022); see MIXUP_METHODS.
    "kd-mixup": {"loss": "kd", "temperature": 4.0, "alpha": 1.0},
}
# Methods trained on materialize_views(train, augment, --mixup): every view of every frame,
# each view a mixture of the frame and a seed-drawn partner, then shifted and rotated; the loop's
# augmentation is off and epochs become epochs / views (the same number of steps and frames seen).
MIXUP_METHODS = {"kd-mixup"}


def _student_args(name: str, args: argparse.Namespace) -> dict:
    """Keyword arguments of the student ``name``: mobilenet1d's come from the command line.

    mobilenet1d at width 0.7 has 9,872 parameters, under 1/20 of the default teacher's 242,376
    (the issue's bound; 241,288 with --teacher-strides 1,2,2), whatever its stem stride;
    cnn1d_small at its default width 6,280.
    """
    if name != "mobilenet1d":
        return {}
    kwargs = {"width_mult": args.width_mult}
    if args.kernel_size != 5:
        kwargs["kernel_size"] = args.kernel_size
    if args.stem_stride != 2:
        kwargs["stem_stride"] = args.stem_stride
    return kwargs


def _student(name: str, num_classes: int, in_channels: int, args: argparse.Namespace) -> torch.nn.Module:
    return create_model(name, num_classes, in_channels, **_student_args(name, args))


def _method_spec(method: str, alpha: float | None) -> dict | None:
    """The KD config of ``method``; ``alpha`` (when given) replaces its kd term's label weight."""
    spec = copy.deepcopy(METHODS[method])
    if spec is None or alpha is None or method in MIXUP_METHODS:  # kd-mixup stays pure KD
        return spec
    if spec.get("loss") == "kd":
        spec["alpha"] = alpha
    for term in spec.get("terms", []):
        if term["name"] == "kd":
            term.setdefault("params", {})["alpha"] = alpha
    return spec


def _teacher_args(args: argparse.Namespace) -> dict:
    strides = [int(s) for s in args.teacher_strides.split(",")]
    return {} if strides == [2, 2, 2] else {"strides": strides}


def _teacher_label(args: argparse.Namespace) -> str:
    kwargs = _teacher_args(args)
    one = f"resnet1d {kwargs}" if kwargs else "resnet1d"
    return one if args.teachers == 1 else f"ensemble of {args.teachers} x {one}"


def _teachers(args, train: ArrayDataset, val: ArrayDataset, test: ArrayDataset, cfg: TrainConfig):
    """Train ``--teachers`` resnet1d teachers (seeds 0, 1, ...): the teacher, and its table rows.

    Several make one ``ensemble`` teacher (the mean of their logits); each member keeps its
    own row, and the ensemble's row is last.
    """
    k, channels = train.num_classes, train.input_shape[0]
    kwargs = _teacher_args(args)
    members, rows = [], []
    for seed in range(args.teachers):
        torch.manual_seed(seed)
        member = create_model("resnet1d", k, channels, **kwargs)
        train_supervised(member, train, val, dataclasses.replace(cfg, seed=seed))
        members.append(member)
        acc = _accuracy(member, test)
        _note(f"teacher {seed}: {acc[0]:.3f} / {acc[1]:.3f} (all / SNR >= 0)")
        name = "teacher resnet1d" + (f" (seed {seed})" if args.teachers > 1 else "")
        rows.append((name, [acc], count_params(member), count_macs(member, train.input_shape)))
    if args.teachers == 1:
        return members[0], rows
    teacher = TeacherEnsemble(k, channels, members).eval()  # safe: nn.Module.eval(), inference mode
    acc = _accuracy(teacher, test)
    _note(f"teacher ensemble: {acc[0]:.3f} / {acc[1]:.3f} (all / SNR >= 0)")
    rows.append(
        (
            f"teacher ensemble of {len(members)}",
            [acc],
            count_params(teacher),
            count_macs(teacher, train.input_shape),
        )
    )
    return teacher, rows


def _describe(augment: AugmentConfig) -> str:
    if not augment.enabled:
        return "no augmentation"
    return f"augmentation: time shift ±{augment.time_shift} + phase rotation, {augment.views} views"


def _accuracy(model: torch.nn.Module, data: ArrayDataset) -> tuple[float, float]:
    """(overall top-1, top-1 over frames with SNR >= 0 dB)."""
    hits = predict_logits(model, data.x, 1024).argmax(1).numpy() == data.y
    return float(hits.mean()), float(hits[data.snr >= 0].mean())


def _data(frames: int, seed: int) -> ArrayDataset:
    cfg = SyntheticModulationConfig(classes=CLASSES, frames_per_class_snr=frames, seed=seed)
    return generate_modulation_dataset(cfg)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _throughput(run, n: int, clock: str = "wall", batch_size: int = 128) -> float:
    """samples/s of the second epoch's steps (the first pays for allocation and warm-up).

    ``clock`` "cpu": samples per CPU-second of this process, from the median per-step
    process time of epoch 2 (validation falls out of the median). On a machine shared with
    other jobs this measures the cost of a step, which wall time there does not.
    """
    if clock == "wall":
        second = run(None).history[1]
        return n / second.get("train_seconds", second["seconds"])
    stamps: list[float] = []
    run(lambda _step: stamps.append(time.process_time()))
    per_epoch = len(stamps) // 2
    steps = np.diff(stamps[per_epoch - 1 :])
    return batch_size / float(np.median(steps))


def _throughput_table(args, teacher, train: ArrayDataset, val: ArrayDataset) -> dict[str, list[float]]:
    """samples/s per training mode, each mode measured ``args.repeats`` times, interleaved.

    Interleaving spreads a busy neighbour's load over every mode instead of one.
    """
    k, shape = train.num_classes, train.input_shape
    tiny_val = val.take(np.arange(min(64, len(val))))  # evaluation is not timed, but keep it cheap
    base = TrainConfig(epochs=2, batch_size=128, lr=5e-3, device=args.device, seed=0)
    augmented = dataclasses.replace(base, augment=AugmentConfig(time_shift=16, phase_rotation=True, views=4))
    n = len(train)

    def student_alone(cfg):
        def run(on_step):
            model = _student(args.throughput_student, k, shape[0], args)
            return train_supervised(model, train, tiny_val, cfg, on_step=on_step)

        return run

    def kd_run(cfg, **kd):
        def run(on_step):
            model = _student(args.throughput_student, k, shape[0], args)
            return distill(model, teacher, train, tiny_val, cfg, KDConfig(**kd), on_step=on_step)

        return run

    modes = {
        "student alone": student_alone(base),
        "online KD": kd_run(base, cache_teacher=False),
        "cached KD (fp16)": kd_run(base),
        "cached KD (top-4)": kd_run(base, cache_storage="topk", cache_topk=4),
        "student alone, augmented": student_alone(augmented),
        "cached KD (fp16), augmented, 4 views": kd_run(augmented),
    }
    if args.amp_compare and args.device.startswith("cuda"):
        for amp in ("off", "auto"):
            modes[f"online KD amp={amp}"] = kd_run(dataclasses.replace(base, amp=amp), cache_teacher=False)
    speeds: dict[str, list[float]] = {name: [] for name in modes}
    for repeat in range(args.repeats):
        for name, run in modes.items():
            speeds[name].append(_throughput(run, n, args.clock, base.batch_size))
        _note(f"throughput repeat {repeat + 1}/{args.repeats} done")
    return speeds


def _print_throughput(speeds: dict[str, list[float]]) -> None:
    print("\n| training mode | samples/s (median) | range | vs student alone |")
    print("| --- | ---: | ---: | ---: |")
    alone = {"": statistics.median(speeds["student alone"])}
    alone["augmented"] = statistics.median(speeds.get("student alone, augmented", speeds["student alone"]))
    for name, values in speeds.items():
        median = statistics.median(values)
        reference = alone["augmented"] if "augmented" in name else alone[""]
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"| {name} | {median:,.0f} | {spread} | {median / reference:.2f}x |")


# --- edgekd's training loop beside a hand-written one (issue #20, part 3) ---

LOOP_KD = {"temperature": 4.0, "alpha": 0.7}
LOOP_STUDENT = ("cnn1d_small", {"width": 32})  # 1,106,432 MACs on [2, 128] frames


def _loop_student(k: int, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights for both loops
    return create_model(LOOP_STUDENT[0], k, channels, **LOOP_STUDENT[1])


def _hand_loop(
    x: torch.Tensor | np.ndarray, y: torch.Tensor, logits: torch.Tensor, cfg: TrainConfig, on_step
) -> float:
    """Seconds of epoch 2 of a minimal KD loop: shuffle, index the frames (a tensor, or a
    memory map read one fancy index per batch), look up the fp16 teacher logits, one step.
    ``on_step(step)`` (or None) after each step, as ``distill`` calls it."""
    model = _loop_student(logits.shape[1], int(x.shape[1]))
    model.train()
    optimizer = make_optimizer([model], cfg)  # edgekd's AdamW groups: the same optimiser
    t, alpha, n = LOOP_KD["temperature"], LOOP_KD["alpha"], len(y)
    generator = torch.Generator().manual_seed(0)
    seconds, step = 0.0, 0
    for _epoch in range(cfg.epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, cfg.batch_size):
            idx = order[first : first + cfg.batch_size]
            xb = x[idx] if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x[idx.numpy()]))
            out, soft = model(xb), logits[idx].float()
            kl = F.kl_div(
                F.log_softmax(out / t, 1), F.log_softmax(soft / t, 1), log_target=True, reduction="batchmean"
            )
            loss = alpha * kl * t * t + (1 - alpha) * F.cross_entropy(out, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step)
        seconds = time.perf_counter() - start
    return seconds


def _edgekd_loop(train, teacher, val, cfg: TrainConfig, cache_dir: str, on_step) -> float:
    """Seconds of epoch 2's steps (validation excluded) of ``distill`` with a cached teacher."""
    model = _loop_student(train.num_classes, train.input_shape[0])
    kd = KDConfig(loss="kd", **LOOP_KD)
    result = distill(model, teacher, train, val, cfg, kd, cache_dir=cache_dir, on_step=on_step)
    return result.history[1]["train_seconds"]


def _loop_speed(run, n: int, clock: str, batch_size: int) -> float:
    """samples/s of a 2-epoch ``run(on_step)`` (it returns epoch 2's seconds): by wall time, or
    ``clock`` "cpu": from the median process time per step of epoch 2 (the training process
    alone: a worker's CPU is not counted)."""
    if clock == "wall":
        return n / run(None)
    stamps: list[float] = []
    run(lambda _step: stamps.append(time.process_time()))
    steps = np.diff(stamps[len(stamps) // 2 - 1 :])
    return batch_size / float(np.median(steps))


def _loop_table(args, teacher, train: ArrayDataset, val: ArrayDataset) -> list[tuple[str, list, list]]:
    """(data, hand samples/s per repeat, edgekd samples/s per repeat), the modes alternating."""
    from edgekd.data.lazy_arrays import ArrayFileDataset

    base = TrainConfig(epochs=2, batch_size=128, lr=5e-3, device="cpu", seed=0, num_threads=args.threads)
    tiny_val = val.take(np.arange(min(64, len(val))))
    with torch.no_grad():
        logits = predict_logits(teacher.eval(), train.x, 512).half()  # as the fp16 cache holds them
    x, y = torch.from_numpy(np.ascontiguousarray(train.x)), torch.from_numpy(train.y).long()
    with tempfile.TemporaryDirectory(prefix="edgekd-loop-bench-") as work:
        train.save_npz(Path(work) / "train.npz")  # np.savez: x stored, so memory-mapped
        np.save(Path(work) / "x.npy", train.x)  # the same frames for the hand loop's np.load map
        mapped = ArrayFileDataset(Path(work) / "train.npz")
        x_map = np.load(Path(work) / "x.npy", mmap_mode="r")
        cache = str(Path(work) / "cache")  # the teacher runs once per data kind, not per repeat
        rows = [("in memory", x, train, base)]  # (data, the hand loop's frames, edgekd's, its config)
        for workers in args.loop_workers.split(","):
            cfg = dataclasses.replace(base, num_workers=workers if workers == "auto" else int(workers))
            rows.append((f"memory-mapped npz, workers {workers}", x_map, mapped, cfg))
        speeds = [(name, [], []) for name, *_ in rows]
        for repeat in range(args.repeats):
            for (_name, frames, data, cfg), (_, hands, edges) in zip(rows, speeds, strict=True):
                hand = functools.partial(_hand_loop, frames, y, logits, base)
                edge = functools.partial(_edgekd_loop, data, teacher, tiny_val, cfg, cache)
                hands.append(_loop_speed(hand, len(y), args.clock, base.batch_size))
                edges.append(_loop_speed(edge, len(y), args.clock, base.batch_size))
            _note(f"hand-loop repeat {repeat + 1}/{args.repeats} done")
    return speeds


def _print_loop_table(speeds: list[tuple[str, list, list]]) -> None:
    print("| data | hand loop samples/s (median, range) | edgekd samples/s (median, range) | edgekd / hand |")
    print("| --- | ---: | ---: | ---: |")
    for name, hands, edges in speeds:
        hand, edge = statistics.median(hands), statistics.median(edges)
        cells = [f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})" for v in (hands, edges)]
        print(f"| {name} | {cells[0]} | {cells[1]} | {edge / hand:.2f}x |")


def _run_hand_loop(args, train: ArrayDataset, val: ArrayDataset, t0: float) -> None:
    torch.manual_seed(0)
    teacher = create_model("resnet1d", train.num_classes, train.input_shape[0])  # speed only: untrained
    speeds = _loop_table(args, teacher, train, val)
    student = _loop_student(train.num_classes, train.input_shape[0])
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if _cpu_has(f))
    print(
        f"\n### Training loop against a hand-written one ({platform.processor() or platform.machine()}, "
        f"flags {flags or 'unknown'}, cpu, {args.threads} thread(s), {args.repeats} alternating repeats, "
        f"{args.clock} clock, "
        f"{(time.perf_counter() - t0) / 60:.1f} min)\n"
    )
    print(
        f"train {len(train)} frames, batch 128, student {LOOP_STUDENT[0]} {LOOP_STUDENT[1]} "
        f"({count_macs(student, train.input_shape):,} MACs), kd T={LOOP_KD['temperature']} "
        f"alpha={LOOP_KD['alpha']}, fp16 teacher logits; samples/s of epoch 2\n"
    )
    _print_loop_table(speeds)


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per class and SNR (train+val)")
    parser.add_argument("--test-frames", type=int, default=20, help="frames per class and SNR (test)")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument(
        "--teachers",
        type=int,
        default=1,
        help="teachers trained (seeds 0..N-1); several teach as one ensemble",
    )
    parser.add_argument(
        "--teacher-strides",
        default="2,2,2",
        help="resnet1d teacher's stage strides (1,2,2: the first stage sees every sample, twice the MACs)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        help="soft-target weight of the kd term of kd and ofa (default: the method's own)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="student epochs")
    parser.add_argument("--views", type=int, default=8, help="augmentation views (0: no augmentation)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--methods",
        default="kd,dkd,nkd,ofa",
        help=f"comma-separated KD methods to run besides scratch (always run); of {', '.join(METHODS)}",
    )
    parser.add_argument(
        "--mixup", type=float, default=0.1, help="largest partner weight of the kd-mixup views (<= 0.5)"
    )
    parser.add_argument("--student", default="mobilenet1d")
    parser.add_argument("--width-mult", type=float, default=0.7, help="mobilenet1d student's width_mult")
    parser.add_argument("--kernel-size", type=int, default=5, help="mobilenet1d student's depthwise taps")
    parser.add_argument(
        "--stem-stride",
        type=int,
        default=2,
        help="mobilenet1d student's stem stride (1: the first block sees every sample, twice the MACs)",
    )
    parser.add_argument("--throughput-student", default="cnn1d_small", help="student of the throughput table")
    parser.add_argument("--device", default="cpu")
    # One thread: on the shared 2-core machine two OpenMP threads made a student epoch ~6x slower.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--amp-compare", action="store_true", help="CUDA: also time KD under AMP vs fp32")
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="only the training-mode table (an untrained teacher: speed does not depend on its weights)",
    )
    parser.add_argument("--no-throughput", action="store_true", help="skip the training-mode table")
    parser.add_argument(
        "--unlabelled-frames",
        type=int,
        default=0,
        help="every KD method also learns from this many unlabelled frames (generator seed 3); "
        "the table against pool size: benchmarks/distill_unlabelled.py",
    )
    parser.add_argument(
        "--hand-loop",
        action="store_true",
        help="only edgekd's cached-teacher KD step against a hand-written loop (in memory, memory map)",
    )
    parser.add_argument(
        "--loop-workers",
        default="auto",
        help="--hand-loop: comma-separated num_workers of the memory-map rows (auto, 0, 2...)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="throughput measurements per mode")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="throughput by wall time, or by this process's CPU time per step (shared machine: 1 thread)",
    )
    args = parser.parse_args()
    methods = ["scratch"] + [m for m in args.methods.split(",") if m and m != "scratch"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    if not all(w == "auto" or w.isdigit() for w in args.loop_workers.split(",")):
        parser.error(f"--loop-workers takes auto or counts such as auto,0,2, got {args.loop_workers!r}")
    if args.teachers < 1:
        parser.error(f"--teachers must be at least 1, got {args.teachers}")
    if not all(part.strip().isdigit() for part in args.teacher_strides.split(",")):
        parser.error(f"--teacher-strides takes positive integers such as 1,2,2, got {args.teacher_strides!r}")
    if args.quick:
        args.frames, args.test_frames, args.teacher_epochs, args.epochs, args.seeds = 12, 6, 2, 2, 1
        args.repeats, args.views = 1, min(args.views, 2)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    full = _data(args.frames, seed=0)
    train, val = full.subset("train"), full.subset("val")
    if args.hand_loop:
        _run_hand_loop(args, train, val, t0)
        return
    if args.throughput_only:
        torch.manual_seed(0)
        teacher = create_model("resnet1d", train.num_classes, train.input_shape[0])
        speeds = _throughput_table(args, teacher, train, val)
        print(
            f"\n### Distillation throughput ({platform.processor() or platform.machine()}, {args.device}, "
            f"{args.threads} threads, {args.repeats} interleaved repeats, {args.clock} clock, "
            f"{(time.perf_counter() - t0) / 60:.1f} min)\n"
        )
        print(
            f"train {len(train)} frames, batch 128, student {args.throughput_student}, "
            "teacher resnet1d (untrained)"
        )
        _print_throughput(speeds)
        return
    held_out = _data(args.test_frames, seed=1)  # other generator seed: new symbols, noise, offsets
    test = held_out  # every frame of the held-out draw
    k, shape = train.num_classes, train.input_shape

    augment = AugmentConfig()
    if args.views:
        augment = AugmentConfig(time_shift=16, phase_rotation=True, views=args.views)
    base = TrainConfig(
        epochs=args.epochs, batch_size=128, lr=5e-3, device=args.device, seed=0, augment=augment
    )
    teacher, rows = _teachers(
        args, train, val, test, dataclasses.replace(base, epochs=args.teacher_epochs, lr=3e-3)
    )
    _note(f"teachers trained after {time.perf_counter() - t0:.0f}s")
    teacher_rows = len(rows)
    mixed_train, mixed_base = train, base
    if any(m in MIXUP_METHODS for m in methods):
        views = max(args.views, 1)
        mixed_x = materialize_views(train.x, dataclasses.replace(augment, views=views), args.mixup)
        mixed_train = ArrayDataset(mixed_x, np.tile(train.y, views), train.class_names)
        mixed_base = dataclasses.replace(
            base, epochs=max(1, round(args.epochs / views)), augment=AugmentConfig()
        )
    pool = None
    if args.unlabelled_frames:  # frames of another generator seed, their labels dropped
        drawn = _data(-(-args.unlabelled_frames // (len(CLASSES) * 20)), seed=3)
        x = drawn.x[np.random.default_rng(3).permutation(len(drawn))[: args.unlabelled_frames]]
        pool = ArrayDataset(x, np.zeros(len(x), dtype=np.int64), train.class_names)
    with tempfile.TemporaryDirectory(prefix="edgekd-distill-bench-") as cache_dir:  # one cache, every KD run
        for method in methods:
            spec = _method_spec(method, args.alpha)
            accs = []
            for seed in range(args.seeds):
                torch.manual_seed(100 + seed)
                student = _student(args.student, k, shape[0], args)
                mixed = method in MIXUP_METHODS
                cfg = dataclasses.replace(mixed_base if mixed else base, seed=seed)
                data = mixed_train if mixed else train
                if spec is None:
                    train_supervised(student, data, val, cfg)
                else:
                    kd = from_dict(KDConfig, spec)
                    distill(student, teacher, data, val, cfg, kd, cache_dir=cache_dir, unlabelled=pool)
                accs.append(_accuracy(student, test))
                elapsed = time.perf_counter() - t0
                _note(f"{method} seed {seed}: {accs[-1][0]:.3f} / {accs[-1][1]:.3f} at {elapsed:.0f}s")
            name = f"{args.student} {method}"
            rows.append((name, accs, count_params(student), count_macs(student, shape)))

    speeds = None if args.no_throughput else _throughput_table(args, teacher, train, val)

    elapsed = time.perf_counter() - t0
    print(
        f"\n### Distillation benchmark ({platform.processor() or platform.machine()}, "
        f"{args.device}, {args.threads} threads, {elapsed / 60:.1f} min)\n"
    )
    print(
        f"train {len(train)} / val {len(val)} frames (seed 0), test {len(test)} frames (held-out seed 1), "
        f"{k} classes, teacher {_teacher_label(args)} {args.teacher_epochs} epochs, "
        f"students {args.epochs} epochs "
        f"({args.student} {_student_args(args.student, args)}), {_describe(augment)}, "
        f"{args.seeds} seeds"
        + (
            f"; kd-mixup: partner weight up to {args.mixup}, {mixed_base.epochs} epochs over "
            f"{len(mixed_train)} materialized views"
            if any(m in MIXUP_METHODS for m in methods)
            else ""
        )
        + (f"; KD methods also on {len(pool)} unlabelled frames (seed 3)" if pool is not None else "")
        + "\n"
    )
    print("| model | params | MACs | acc (all SNR) | acc (SNR >= 0 dB) |")
    print("| --- | ---: | ---: | --- | --- |")
    for name, accs, params, macs in rows:
        overall = [a[0] * 100 for a in accs]
        high = [a[1] * 100 for a in accs]

        def fmt(v: list[float]) -> str:
            return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

        print(f"| {name} | {params:,} | {macs:,} | {fmt(overall)} | {fmt(high)} |")
    for name, accs, _params, _macs in rows[teacher_rows:]:
        print(f"\n{name} per seed (SNR >= 0 dB): " + ", ".join(f"{a[1] * 100:.2f}" for a in accs))
    if speeds is not None:
        _print_throughput(speeds)


if __name__ == "__main__":
    main()
